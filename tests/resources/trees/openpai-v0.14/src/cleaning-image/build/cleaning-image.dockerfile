FROM base-image

COPY build/cleaner.sh /usr/local/bin/
