//! Images: the content-addressed store, pulls from OCI registries, layer unpacking and the
//! overlay lower dirs handed to containers. Implements [`crate::cri::ImageService`].

pub mod rootfs;
