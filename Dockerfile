# One image for the web process and both workers (the command differs). CPU build of PyTorch.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 CIR_DATA_DIR=/data
# g++: index workers compile real-size ResNet image towers with torch.compile (1.65x on RN50x4, see the
# README); without a compiler they encode eager (retrieval/models/precision.py), so it may be dropped from web images.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
# The CPU wheels are a fraction of the default CUDA build; use the default index on a GPU host instead.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt
COPY . .
RUN python manage.py collectstatic --no-input -v0
EXPOSE 8000
CMD ["python", "-m", "cirweb.processes.webserver", "--host", "0.0.0.0", "--port", "8000"]
