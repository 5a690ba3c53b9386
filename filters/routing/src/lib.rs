//! portcullis-routing
