"""The Ray Serve application: the Router shell (app) over plain policy classes (traffic, judge,
rollout), the model deployment (model_server), HTTP schemas (api), deploys (deploy) and the
rollout CLI's HTTP client (client)."""
