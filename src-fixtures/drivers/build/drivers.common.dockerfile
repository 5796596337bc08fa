# <image>.common.dockerfile is always built; <image>.<kind>.dockerfile only for that kind.
FROM base-image
RUN echo "drivers" > /etc/drivers
