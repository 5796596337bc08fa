# syntax=docker/dockerfile:1
FROM python:3.11-slim AS wheels
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    pip wheel -r /tmp/requirements.txt -w /wheels

FROM base-image
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    --mount=type=bind,from=drivers-418.56,source=/drivers,target=/drivers \
    pip install /wheels/*.whl
RUN --mount=type=tmpfs,target=/tmp --mount=type=secret,id=token cat /run/secrets/token
