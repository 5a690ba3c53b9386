//! portcullis-jwt
