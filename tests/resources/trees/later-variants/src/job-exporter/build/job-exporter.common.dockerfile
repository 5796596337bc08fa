# syntax=docker/dockerfile:1
FROM golang:1.20 AS build
RUN --mount=from=base-image,source=/etc,target=/x true
FROM scratch
COPY --from=build /job-exporter /
