# Multi-stage: the builder stage is a stage name, not an image of the tree.
FROM base-image AS builder
COPY cmd/ /src/
RUN echo "built-by-stage" > /out && cp /src/main.sh /watchdog && chmod +x /watchdog

FROM base-image
COPY --from=builder /out /etc/watchdog-build
COPY --from=builder /watchdog /usr/bin/watchdog
CMD ["/usr/bin/watchdog"]
