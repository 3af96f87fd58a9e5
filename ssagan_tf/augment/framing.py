"""Which field of view augmentation's file inputs are framed in (`--field_of_view`): the one the
model's training slices were framed in, so that the generator sees heads at the size it learned.

`auto` reads it from the export (`export.json` -> `training_framing`, written by
`ssagan_tf.export` from the training run's dataset manifest; a training run given as `--model`
is exported first, so it has one). An export that does not say (written before the record, or
whose training data was gone at export time) gets `pad`, the framing every dataset had before
`fit` existed, with a console line saying so. Converted TFRecord inputs are framed already: their
manifest says how, and an explicit `--field_of_view` that contradicts it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from ssagan_tf.data import preprocess

TRAINING_FRAMING = "training_framing"      # the export.json key (ssagan_tf.export.TRAINING_FRAMING)


@dataclass(frozen=True)
class FramingChoice:
    """The field of view for file inputs, the converter settings that set its box, and why."""

    field_of_view: str
    min_brain_ratio: float = preprocess.MIN_BRAIN_RATIO
    brain_length_mm: float = preprocess.BRAIN_LENGTH_MM
    reason: str = ""
    trained: str | None = None     # the training data's field of view, None when the export does not say

    def record(self) -> dict:
        """What output manifests record as the framing of the slices written."""
        return {"field_of_view": self.field_of_view, "min_brain_ratio": self.min_brain_ratio,
                "brain_length_mm": self.brain_length_mm}


def model_framing(info: dict):
    """The training data's framing recorded in an export's `export.json` (`info`), or None."""
    framing = info.get(TRAINING_FRAMING)
    if isinstance(framing, dict) and framing.get("field_of_view") in preprocess.FIELDS_OF_VIEW:
        return framing
    return None


def choose_framing(requested: str, info: dict, model: str) -> FramingChoice:
    """The framing of file inputs for `--field_of_view=requested` and the export `info` of `model`
    (its label, for the console line)."""
    if requested not in ("auto",) + preprocess.FIELDS_OF_VIEW:
        raise ValueError(f"--field_of_view must be auto, fit or pad, got {requested!r}")
    trained = model_framing(info)
    settings = {} if trained is None else {"min_brain_ratio": float(trained.get("min_brain_ratio",
                                                                                preprocess.MIN_BRAIN_RATIO)),
                                           "brain_length_mm": float(trained.get("brain_length_mm",
                                                                                preprocess.BRAIN_LENGTH_MM))}
    if requested != "auto":
        note = ""
        if trained is not None and trained["field_of_view"] != requested:
            note = (f"; the model's training data was framed with {trained['field_of_view']}, so the heads will "
                    "not be the size it learned")
        return FramingChoice(requested, reason=f"field of view {requested} (--field_of_view={requested}){note}",
                             trained=trained and trained["field_of_view"], **settings)
    if trained is not None:
        source = trained.get("source_manifest") or "its training data"
        return FramingChoice(trained["field_of_view"], reason=f"field of view {trained['field_of_view']} "
                             f"(--field_of_view=auto: {model} was trained on slices framed so, {source})",
                             trained=trained["field_of_view"], **settings)
    why = ("exported before export.json recorded it" if TRAINING_FRAMING not in info else
           "its training data's manifest was not there, or did not say, when it was exported")
    return FramingChoice("pad", reason=(
        f"field of view pad (--field_of_view=auto): {model} does not record how its training data was framed "
        f"({why}); pad is the converter's framing before fit existed. If the model was trained on slices "
        "converted with --field_of_view=fit, pass --field_of_view=fit or export the training run again"))


def converted_framing(requested: str, choice: FramingChoice, manifest: dict, data_dir: str):
    """The framing of a converted dataset's slices (its manifest's record, or None) checked against
    `--field_of_view=requested`: an explicit value that contradicts the record is refused (the
    slices are framed already), and `auto` with a model trained on other framing gives a
    console line. Returns (record or None, the console line)."""
    framed = preprocess.recorded_framing(manifest)
    name = f"{data_dir}/manifest.json"
    if framed is None:
        return None, (f"field of view: {name} does not record how its slices were framed; they are augmented "
                      "as they are")
    used = framed["field_of_view"]
    if requested != "auto" and requested != used:
        raise ValueError(f"--field_of_view={requested}: the slices of {data_dir} were converted with "
                         f"--field_of_view={used} ({name}) and are augmented as they are; --field_of_view frames "
                         "PNG/NIfTI inputs. Convert the data again with --field_of_view="
                         f"{requested}, or leave --field_of_view at auto")
    line = f"field of view {used} (converted slices, {name})"
    if choice.trained is not None and choice.trained != used:
        line += (f"; the model was trained on slices framed with {choice.trained}: convert the data with "
                 f"--field_of_view={choice.trained} for heads of the size it learned")
    return framed, line
