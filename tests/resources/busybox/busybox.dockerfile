# A base image with a shell and coreutils, built without pulling anything:
# `busybox` is the static binary from Debian's busybox-static, copied in by the test.
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
