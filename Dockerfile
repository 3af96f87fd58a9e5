# ssagan_tf on a GPU: TensorFlow's own GPU image at the pinned TF version, the package installed,
# every verb of the `ssagan` command as the entry point, run as an unprivileged user.
#   docker build -t ssagan_tf .
#   docker run --gpus all --user "$(id -u):$(id -g)" -v "$PWD/data:/opt/ssagan_tf/data" \
#       -v "$PWD/runs:/opt/ssagan_tf/runs" ssagan_tf train --flagfile=brain.flags
#   docker run ssagan_tf --help          # the verbs: convert judge train export augment evaluate demo
# The recipes (*.flags) name data/... and runs/... relative to /opt/ssagan_tf, where the two
# mounts put them. .dockerignore keeps the build context to the sources (no .venv, runs, data, .git).
FROM tensorflow/tensorflow:2.21.0-gpu

WORKDIR /opt/ssagan_tf
COPY requirements.txt ./
# The base image already has tensorflow 2.21.0; pip keeps it and adds the rest at pinned versions.
RUN python -m pip install --no-cache-dir -r requirements.txt
COPY pyproject.toml README.md ./
COPY ssagan_tf ssagan_tf
COPY data_prep data_prep
RUN python -m pip install --no-cache-dir --no-deps . && rm -rf build ./*.egg-info
# The recipes and what `ssagan demo` drives (it runs from a source checkout's root).
COPY scripts scripts
COPY run_train.py run_augment.py run_evaluate.py brain.flags lgg.flags demo.flags ./
RUN useradd --create-home --uid 1000 ssagan && mkdir -p runs data && chown ssagan runs data
USER ssagan
ENV TF_CPP_MIN_LOG_LEVEL=2
ENTRYPOINT ["ssagan"]
CMD ["--help"]
