# Global ARGs choose the base images; build args can override them.
ARG REGISTRY=docker.io
ARG CUDA_VERSION="10.0"
ARG BASE=base-image
ARG UNSET

FROM ${REGISTRY}/nvidia/cuda:${CUDA_VERSION}-runtime AS cuda
RUN echo cuda

FROM $BASE
ARG BASE=not-global
COPY --from=cuda /usr/local/cuda /usr/local/cuda

FROM ${UNSET:-alpine:3.19} AS tools
FROM ${BASE:+${BASE}-dev}
