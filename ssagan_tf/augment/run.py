"""One augmentation run: plan, translate the pending chunks in batches, commit, summarise.

Reading, translating and writing overlap: the source is read ahead in a thread (tf.data for
TFRecords), translation runs in the calling thread, and chunks are written and committed in one
writer thread, in order.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from absl import logging

from ssagan_tf import io as durable
from ssagan_tf import lesions
from ssagan_tf.augment import ledger as ledger_lib
from ssagan_tf.augment import sheet
from ssagan_tf.augment.config import AugmentConfig
from ssagan_tf.augment.framing import choose_framing
from ssagan_tf.augment.plan import build_plan
from ssagan_tf.augment.sources import open_source
from ssagan_tf.augment.writers import WRITERS, WriteContext
from ssagan_tf.data import integrity, pipeline, schema
from ssagan_tf.data.schema import SOURCE_DOMAIN, TARGET_DOMAIN
from ssagan_tf.export import export_models
from ssagan_tf.exported import load_translator
from ssagan_tf.judge import scoring
from ssagan_tf.locking import DirectoryLock

CONTACT_SHEET_NAME = "contact_sheet.png"
LOCK_NAME = ".augment.lock"     # in output_dir, held while a run writes there (ssagan_tf.locking)
SUMMARY_NAME = "augment.json"
_MAX_QUEUED_CHUNKS = 2
_PROGRESS_SECONDS = 10.0


@dataclass(frozen=True)
class AugmentResult:
    output_dir: str
    model: str                  # "<name>/<version>"
    counts: dict                # synthetic slices per class ("normal", "tumor")
    chunks: int
    chunks_skipped: int         # committed by an earlier run
    slices_translated: int      # by this run (repeats of a source slice are translated once)
    seconds: float              # translation and writing, this run (wall clock)
    cpu_seconds: float          # CPU time of the whole process over the same phase
    manifest_csv: str
    contact_sheet: str | None

    @property
    def slices_per_second(self) -> float:
        return self.slices_translated / self.seconds if self.seconds > 0 else 0.0


class _Progress:
    """A log line every few seconds: slices done of total, rate, time left."""

    def __init__(self, total: int):
        self.total, self.done, self.start, self.last = total, 0, time.perf_counter(), 0.0

    def update(self, count: int, label: str) -> None:
        self.done += count
        now = time.perf_counter()
        if now - self.last >= _PROGRESS_SECONDS or self.done >= self.total:
            rate = self.done / max(now - self.start, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            logging.info("%s: %d of %d synthetic slices (%.0f%%), %.1f slices/s, ETA %.0f s", label, self.done,
                         self.total, 100.0 * self.done / max(self.total, 1), rate, left)
            self.last = now


def _read_ahead(iterator, depth: int = 2):
    """Run `iterator` in a thread, `depth` elements ahead; its exceptions re-raise here."""
    items, done = queue.Queue(maxsize=depth), object()

    def produce():
        try:
            for element in iterator:
                items.put(element)
            items.put(done)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            items.put(err)

    threading.Thread(target=produce, daemon=True).start()
    while True:
        element = items.get()
        if element is done:
            return
        if isinstance(element, BaseException):
            raise element
        yield element


def _check_output_dir(output_dir: str) -> None:
    """Refuse a folder holding anything an augmentation did not write (its claims in `.augment/`):
    a re-run replaces files it claimed, `--overwrite` removes them, and neither may touch a user's."""
    path = os.path.join(output_dir, schema.MANIFEST_NAME)
    if os.path.isfile(path):
        with open(path) as f:
            if "synthetic" not in json.load(f):
                raise ValueError(f"{output_dir} holds a real converted dataset ({path}); choose another --output_dir")
    if not os.path.isdir(output_dir):
        return
    foreign = ledger_lib.foreign_files(output_dir, LOCK_NAME)
    if not foreign:
        return
    if not os.path.isdir(os.path.join(output_dir, ledger_lib.STATE_DIR)):
        raise ValueError(f"--output_dir {output_dir} is not empty and holds no augmentation of ours (no "
                         f"{ledger_lib.STATE_DIR}/; it has {ledger_lib.describe(foreign)}); choose a new or empty "
                         "folder, nothing there is replaced")
    raise ValueError(f"--output_dir {output_dir} holds files no augmentation wrote ({ledger_lib.describe(foreign)}: "
                     f"not in the record in {ledger_lib.STATE_DIR}/); nothing there is replaced, with or without "
                     "--overwrite: move them out or choose another --output_dir")


def _mask_threshold(config: AugmentConfig, translator) -> float:
    if config.mask_threshold is not None:
        return config.mask_threshold
    return translator.tau if translator.tau > 0 else 0.5


def _settings(config: AugmentConfig, translator, source, mask_threshold: float) -> dict:
    """What must not change between a run and its re-run: the input data by checksum, the model
    by name and version, and every setting of the plan. Paths are kept relative to the output
    folder and only for the messages (`data_dir`, `model_path`), so a moved project completes."""
    return {"model_version": translator.label, "model_path": _relative_to(translator.path, config.output_dir),
            "data_dir": _relative_to(config.data_dir, config.output_dir), "input_checksum": source.checksum(),
            "source": source.kind, "split": config.split, "format": config.format, "ratio": config.ratio,
            "seed": config.seed, "directions": list(config.directions), "chunk_size": config.chunk_size,
            "mask_threshold": mask_threshold, "precision": translator.precision,
            "real_slices": {d: len(source.refs(d)) for d in schema.DOMAINS},
            # With the placement's version: a run resumed after lesions moved is refused, not mixed.
            **({"lesion_masks": True, "lesion_placement": lesions.PLACEMENT_VERSION} if config.lesion_masks else {}),
            # Recorded only when not the framing file inputs always had, so earlier runs still complete.
            **({"field_of_view": source.framing} if source.kind == "files" and source.framing["field_of_view"] != "pad"
               else {})}


def _relative_to(path: str, start: str) -> str:
    return os.path.relpath(os.path.abspath(path), os.path.abspath(start)).replace(os.sep, "/")


def _ambiguous(source, directions) -> frozenset:
    """(domain, case, slice) keys that occur more than once, whose PNG names need the position."""
    keys = collections.Counter((r.domain, r.case_id, r.slice_index)
                               for d in directions for r in source.refs(SOURCE_DOMAIN[d]))
    return frozenset(k for k, n in keys.items() if n > 1)


class _ChunkWriter:
    """Writes and commits finished chunks in a single thread, at most `_MAX_QUEUED_CHUNKS` behind."""

    def __init__(self, ledger, ctx: WriteContext, fmt: str):
        self.ledger, self.ctx, self.write = ledger, ctx, WRITERS[fmt]
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="augment-writer")
        self.futures = collections.deque()

    def _write_and_commit(self, chunk, outputs) -> None:
        files, rows = self.write(chunk, outputs, self.ctx, self.ledger.new_staging(chunk))
        self.ledger.commit(chunk, files, rows)

    def submit(self, chunk, outputs) -> None:
        while self.futures and (self.futures[0].done() or len(self.futures) >= _MAX_QUEUED_CHUNKS):
            self.futures.popleft().result()
        self.futures.append(self.executor.submit(self._write_and_commit, chunk, outputs))

    def close(self) -> None:
        try:
            while self.futures:
                self.futures.popleft().result()
        finally:
            self.executor.shutdown(wait=True, cancel_futures=True)


def _translate(translator, direction: str, images, positions, lesion_masks=None):
    """(translated, attention) of a batch of source slices at split `positions`; with
    `lesion_masks`, normal->tumor draws inside the masks it gives (and returns them)."""
    if lesion_masks is not None and direction == "normal_to_tumor":
        return translator.in_masks(images, lesion_masks(images, positions))
    return translator(direction, images)


def _translate_direction(direction: str, chunks: list, source, translator, writer: _ChunkWriter,
                         batch_size: int, progress: _Progress, lesion_masks=None) -> int:
    """Translate every source slice the pending `chunks` of one direction need, once each, and hand
    each chunk to the writer when its last slice is in; returns the number of translations. With
    `lesion_masks` (`lesions.LesionMasks`) normal->tumor draws inside the masks it gives."""
    slots = collections.defaultdict(list)
    for chunk in chunks:
        for slot, item in enumerate(chunk.items):
            slots[item.ref.position].append((chunk, slot))
    outputs = {chunk.name: [None] * len(chunk.items) for chunk in chunks}
    missing = {chunk.name: len(chunk.items) for chunk in chunks}
    positions = np.asarray(sorted(slots), np.int64)
    translated_count = 0
    for images, batch_positions in _read_ahead(source.stream(SOURCE_DOMAIN[direction], positions, batch_size)):
        translated, attention = _translate(translator, direction, images, batch_positions, lesion_masks)
        translated_count += len(images)
        filled = 0
        for k, position in enumerate(batch_positions.tolist()):
            for chunk, slot in slots.pop(position):
                outputs[chunk.name][slot] = (translated[k], attention[k])
                missing[chunk.name] -= 1
                filled += 1
                if missing[chunk.name] == 0:
                    writer.submit(chunk, outputs.pop(chunk.name))
        progress.update(filled, direction)
    if slots:
        raise RuntimeError(f"{direction}: {len(slots)} planned source slices were not found on the second "
                           "read; did the input data change during the run?")
    return translated_count


def _judge_sample(config, plan: list, source, translator, lesion_masks=None) -> dict:
    """The judge's measures (`scoring.measure`) of up to `config.judge_slices` planned source
    slices per direction, translated again in batches of `config.batch_size` (the generator is
    deterministic, so these are the slices written), against real slices of the target class from
    the input: the other direction's sources, whether or not that direction was augmented."""
    judge = scoring.Judge(config.judge)
    judge.check_shape(translator.image_shape)
    rng = np.random.default_rng(config.seed)

    def sample(domain: str, wanted=None) -> dict:
        """Up to `config.judge_slices` of the `domain` slices at positions `wanted` (default: all),
        labelled, with their cases and positions."""
        refs = source.refs(domain)
        positions = sorted(wanted) if wanted is not None else range(len(refs))
        positions = np.asarray(positions, np.int64)
        if len(positions) > config.judge_slices:
            positions = np.sort(rng.choice(positions, config.judge_slices, replace=False))
        parts = list(source.stream(domain, positions, config.batch_size))
        images = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0,) + translator.image_shape, np.float32)
        read = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        return {"image": images, "label": np.full(len(read), schema.LABELS[domain], np.int64),
                "case_id": np.asarray([refs[int(p)].case_id for p in read], dtype=str), "position": read}

    def translate(direction: str, part: dict):
        return _translate(translator, direction, part["image"], part["position"], lesion_masks)[0]

    out = {}
    for direction in config.directions:
        planned = {item.ref.position for chunk in plan if chunk.direction == direction for item in chunk.items}
        inputs = sample(SOURCE_DOMAIN[direction], planned)
        target = sample(TARGET_DOMAIN[direction])
        both = {key: np.concatenate([inputs[key], target[key]]) for key in inputs}
        measured = scoring.measure(judge, translate, both, directions=(direction,), batch_size=config.batch_size,
                                   seed=config.seed)
        if direction not in measured:
            continue
        out[direction] = measured[direction]
        rate = out[direction]["rate"]
        logging.info("judge %s: %s rate %.2f (inputs %.2f, real %.2f) over %d slices", direction.replace("_to_", "->"),
                     TARGET_DOMAIN[direction], rate["synthetic"], rate["inputs"], rate["real_target"],
                     len(inputs["image"]))
    return {"judge": config.judge, "judge_test_auc": judge.test_auc, "directions": out}


def _write_contact_sheet(ledger, plan: list, source, translator, rows: int, directions,
                         lesion_masks=None) -> str | None:
    groups = []
    for direction in directions:
        firsts = sorted({item.ref.position for c in plan if c.direction == direction for item in c.items})[:rows]
        group = []
        for images, positions in source.stream(SOURCE_DOMAIN[direction], np.asarray(firsts, np.int64), max(rows, 1)):
            translated, attention = _translate(translator, direction, images, positions, lesion_masks)
            group += [sheet.sheet_row(images[i], attention[i], translated[i]) for i in range(len(images))]
        groups.append((direction, group))
    if not any(group for _, group in groups):
        return None
    image = sheet.contact_sheet(groups)
    return ledger.put(CONTACT_SHEET_NAME, lambda path: sheet.write_png(path, image))


def _dataset_manifest(config, translator, source, rows: list, mask_threshold: float) -> dict:
    """A manifest for the synthetic TFRecords, readable by `schema.open` like a converted dataset's."""
    counts = {s: {d: 0 for d in schema.DOMAINS} for s in schema.SPLITS}
    counts.setdefault(config.split, {d: 0 for d in schema.DOMAINS})
    for row in rows:
        counts[config.split][schema.DOMAINS[row["label"]]] += 1
    description = source.description()
    height, _, channels = translator.image_shape
    # Synthetic shards are written float32 and uncompressed (writers.write_tfrecord_chunk).
    return {"schema_version": schema.SCHEMA_VERSION, "image_size": height, "channels": channels,
            schema.STORAGE_KEY: schema.LEGACY_STORAGE.manifest_entry(),
            "modalities": description.get("modalities") or ["image"] * channels, "counts": counts,
            "cases": {config.split: sorted({row["source_case"] for row in rows})},
            "normalisation": description.get("normalisation", {}),
            **({"framing": source.framing} if source.framing else {}),
            "shards": _shard_records(config.output_dir, rows),
            "synthetic": {"model": translator.label, "model_path": translator.path, "tau": translator.tau,
                          "mask_threshold": mask_threshold, "ratio": config.ratio, "seed": config.seed,
                          "directions": list(config.directions), "source": description},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _shard_records(output_dir: str, rows: list) -> dict:
    """The manifest's `shards` entry (`ssagan_tf.data.integrity`): each shard's records, size and
    checksum, so that readers check the synthetic set as they check a converted one."""
    records = collections.Counter(row["output_path"] for row in rows)
    return {name: integrity.describe_shard(os.path.join(output_dir, name), count)
            for name, count in sorted(records.items())}


def augment_dataset(config: AugmentConfig) -> AugmentResult:
    """Run (or complete) the augmentation `config` describes; see the package docstring. One run
    at a time per output folder: a second raises `locking.DirectoryLockedError` naming the first.
    A run that fails before committing anything removes what it created (its state folder, its
    lock file, the output folder itself), so no empty folder is left holding only a lock."""
    config.check_inputs()
    _check_output_dir(config.output_dir)
    created = [p for p in (config.output_dir, os.path.join(config.output_dir, LOCK_NAME),
                           os.path.join(config.output_dir, ledger_lib.STATE_DIR)) if not os.path.lexists(p)]
    with DirectoryLock(config.output_dir, LOCK_NAME, "an augmentation run", "--output_dir"):
        try:
            return _augment(config)
        except BaseException:
            _remove_if_nothing_committed(config.output_dir, created)
            raise


def _remove_if_nothing_committed(output_dir: str, created: list) -> None:
    """After a failure: when no output file is in place, remove what this run created (never a
    state folder or lock file that an earlier run left)."""
    outputs = durable.entries_under(output_dir, lambda name: name in (ledger_lib.STATE_DIR, LOCK_NAME))
    if ledger_lib.Ledger(output_dir).committed_any() or outputs:
        return                   # files in place (even of a chunk cut short): its state must stay
    state_dir, lock = os.path.join(output_dir, ledger_lib.STATE_DIR), os.path.join(output_dir, LOCK_NAME)
    if state_dir in created:
        shutil.rmtree(state_dir, ignore_errors=True)
    if lock in created and os.path.isfile(lock):
        os.remove(lock)          # still held until the lock is released; nobody else can hold it
    if output_dir in created:
        try:
            os.rmdir(output_dir)
        except OSError:
            pass                 # something else appeared in it: left alone


def _augment(config: AugmentConfig) -> AugmentResult:
    translator = load_translator(config.model, scratch_dir=os.path.join(config.output_dir, ledger_lib.STATE_DIR),
                                 precision=config.precision, export_run=export_models)
    logging.info("Precision %s (--precision=%s)", translator.precision, config.precision)
    source = open_source(config.data_dir, config.split, translator.image_shape,
                         choose_framing(config.field_of_view, translator.info, translator.label), config.field_of_view)
    if config.format == "png" and translator.image_shape[2] != 1:
        raise ValueError(f"--format=png writes single-channel images; this model has {translator.image_shape[2]} "
                         "channels: use --format=tfrecord or nifti")
    mask_threshold = _mask_threshold(config, translator)
    plan = build_plan(source, config.directions, config.ratio, config.seed, config.chunk_size,
                      per_case=config.format == "nifti")
    os.makedirs(config.output_dir, exist_ok=True)
    if config.overwrite:
        logging.info("Removed %d files of an earlier augmentation in %s", ledger_lib.clear_previous(config.output_dir),
                     config.output_dir)
    ledger = ledger_lib.Ledger(config.output_dir)
    ledger.start(_settings(config, translator, source, mask_threshold))
    ctx = WriteContext(config.split, translator.name, translator.version, mask_threshold,
                       translator.has_attention or config.lesion_masks,
                       _ambiguous(source, config.directions), source.geometry)
    pending = [chunk for chunk in plan if ledger.rows(chunk) is None]
    logging.info("Augmenting with %s: %d chunks planned, %d already committed", translator.label, len(plan),
                 len(plan) - len(pending))
    start, cpu_start = time.perf_counter(), time.process_time()
    progress = _Progress(sum(len(chunk.items) for chunk in pending))
    writer = _ChunkWriter(ledger, ctx, config.format)
    translated = 0
    masks = None
    if config.lesion_masks and "normal_to_tumor" in config.directions:
        # A TFRecordSource (check_inputs): the lesions are the split's labelled tumor slices.
        masks = lesions.LesionMasks(pipeline.load_split_arrays(source.dataset, config.split, domains=("tumor",)),
                                    config.seed, f"--lesion_masks: the {config.split} split of {config.data_dir}")
    try:
        for direction in config.directions:
            chunks = [chunk for chunk in pending if chunk.direction == direction]
            translated += _translate_direction(direction, chunks, source, translator, writer, config.batch_size,
                                               progress, masks)
    finally:
        writer.close()
    if masks is not None and masks.unplaced:
        logging.warning("--lesion_masks: no lesion fitted inside the brain of %d normal slices; their synthetic "
                        "tumors are unchanged inputs with empty masks", masks.unplaced)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return _finish(config, translator, source, plan, ledger, mask_threshold, len(plan) - len(pending), translated,
                   seconds, cpu_seconds, masks)


def _finish(config, translator, source, plan, ledger, mask_threshold, skipped, translated, seconds,
            cpu_seconds, lesion_masks=None) -> AugmentResult:
    rows = []
    for chunk in plan:
        committed = ledger.rows(chunk)
        if committed is None:
            raise RuntimeError(f"chunk {chunk.name} was not committed")
        rows += committed
    manifest_csv = ledger.write_output("manifest.csv", ledger_lib.manifest_csv_text(rows))
    if config.format == "tfrecord":
        ledger.write_output(schema.MANIFEST_NAME,
                            ledger_lib.json_text(_dataset_manifest(config, translator, source, rows, mask_threshold)))
    sheet_path = None
    if config.contact_rows:
        sheet_path = _write_contact_sheet(ledger, plan, source, translator, config.contact_rows, config.directions,
                                          lesion_masks)
    counts = {d: sum(1 for row in rows if TARGET_DOMAIN[row["direction"]] == d) for d in schema.DOMAINS}
    judged = _judge_sample(config, plan, source, translator, lesion_masks) if config.judge else None
    result = AugmentResult(config.output_dir, translator.label, counts, len(plan), skipped, translated, seconds,
                           cpu_seconds, manifest_csv, sheet_path)
    ledger.write_output(SUMMARY_NAME, ledger_lib.json_text({
        "model": translator.label, "model_path": translator.path, "tau": translator.tau,
        "mask_threshold": mask_threshold, "format": config.format, "split": config.split, "ratio": config.ratio,
        "seed": config.seed, "directions": list(config.directions), "source": source.description(),
        **({"lesion_masks": True} if config.lesion_masks else {}),
        # How the input slices were framed (None: a converted dataset whose manifest does not say).
        "field_of_view": {"requested": config.field_of_view,
                          "used": source.framing["field_of_view"] if source.framing else None,
                          "framing": source.framing, "why": source.framing_line},
        "counts": counts, "chunks": len(plan), "chunks_skipped": skipped,
        "last_run": {"slices_translated": translated, "seconds": round(seconds, 3),
                     "cpu_seconds": round(cpu_seconds, 3),
                     "slices_per_second": round(result.slices_per_second, 2)},
        "judge": judged}))
    logging.info("Wrote %d normal and %d tumor synthetic slices to %s (%d chunks, %d from an earlier run)",
                 counts["normal"], counts["tumor"], config.output_dir, len(plan), skipped)
    return result
