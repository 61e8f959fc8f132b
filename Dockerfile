# The modeld controller's image, for a machine with a container daemon or buildah: the same image
# `npm run image` builds without one (scripts/build-image.sh), FROM scratch over the same root
# filesystem, with the same config. Assemble the root filesystem first, then build:
#
#   scripts/build-image.sh --arch amd64 --rootfs-only .image/amd64
#   docker build -f Dockerfile -t ghcr.io/modeld/modeld-controller:0.1.0-amd64 .image/amd64
#   # or: buildah bud -f Dockerfile -t ghcr.io/modeld/modeld-controller:0.1.0-amd64 .image/amd64
#
# (test/controller/image.test.ts keeps this config equal to build-image.sh's.)
FROM scratch
COPY rootfs/ /
USER 65532:65532
WORKDIR /opt/modeld
ENV PATH=/opt/modeld/node/bin:/usr/bin:/bin NODE_ENV=production
ENTRYPOINT ["/opt/modeld/node/bin/node", "/opt/modeld/dist/controller/main.js"]
