# Two images in one component: tools FROM tools-base orders the two builds.
from base-image
run echo "tools-base" > /etc/tools-base
