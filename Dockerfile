# ssagan_tf on a GPU: TensorFlow's own GPU image at the pinned TF version.
#   docker build -t ssagan_tf .
#   docker run --gpus all -v $PWD/data:/data -v $PWD/runs:/runs ssagan_tf --flagfile=brain.flags \
#       --data_dir=/data/brats_t1ce --model_dir=/runs/brats
FROM tensorflow/tensorflow:2.21.0-gpu

WORKDIR /opt/ssagan_tf
COPY requirements.txt requirements-test.txt ./
# The base image already has tensorflow 2.21.0; pip keeps it and adds the rest at pinned versions.
RUN python -m pip install --no-cache-dir -r requirements.txt
COPY . .
ENV PYTHONPATH=/opt/ssagan_tf TF_CPP_MIN_LOG_LEVEL=2
ENTRYPOINT ["python", "run_train.py"]
CMD ["--helpshort"]
