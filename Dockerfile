# The in-cluster Job image of docs/in-cluster.md: podcap-merge alone, run as a non-root user.
#   docker build -t registry.example.com/podcap-merge:0.1.0 .
# The capture containers it adds to pods use their own image (--image, default
# nicolaka/netshoot:v0.13); this image only runs podcap-merge.

FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
# the product without the demo's in-process test cluster (the `demo` feature)
RUN cargo build --release --locked --no-default-features --bin podcap-merge

FROM debian:bookworm-slim
COPY --from=build /src/target/release/podcap-merge /usr/local/bin/podcap-merge
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/podcap-merge"]
