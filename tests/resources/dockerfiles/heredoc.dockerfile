from alpine:3.19 as build
run <<SCRIPT
set -e
echo "FROM not-an-image" > /Dockerfile
echo "COPY --from=not-a-ref a b"
SCRIPT

from base-image
copy --from=build <<NOTE /note.txt
RUN --mount=from=not-a-mount,target=/x this is text, not an instruction
NOTE
copy --from=busybox:1.36 /bin/busybox /bin/busybox
