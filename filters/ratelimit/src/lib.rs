//! portcullis-ratelimit
