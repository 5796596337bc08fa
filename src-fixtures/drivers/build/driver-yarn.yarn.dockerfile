FROM drivers
RUN echo "yarn" > /etc/driver-kind
