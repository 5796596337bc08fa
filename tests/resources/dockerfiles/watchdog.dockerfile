# A two-stage build in the style of OpenPAI's watchdog: compile in a Go image,
# then copy the binary onto the tree's own base image.

FROM golang:1.13.8-alpine as builder

ENV PROJECT_DIR=/src/watchdog
ENV INSTALL_DIR=/opt/watchdog

RUN apk update && apk add --no-cache bash git && \
    mkdir -p ${PROJECT_DIR} ${INSTALL_DIR}
COPY src/watchdog ${PROJECT_DIR}
RUN ${PROJECT_DIR}/build/go-build.sh && \
    mv ${PROJECT_DIR}/dist/* ${INSTALL_DIR}

FROM base-image

ENV INSTALL_DIR=/opt/watchdog
COPY --from=builder ${INSTALL_DIR} ${INSTALL_DIR}
WORKDIR /usr/src/app
ENTRYPOINT ["/opt/watchdog/watchdog"]
