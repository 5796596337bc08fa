FROM drivers
RUN echo "k8s" > /etc/driver-kind
