//! portcullis-edge
