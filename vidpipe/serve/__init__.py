"""``vidpipe serve``: a long-running service around one live pipeline, with an HTTP API, a live web view,
Prometheus metrics and MQTT. Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client, paho-mqtt)."""
