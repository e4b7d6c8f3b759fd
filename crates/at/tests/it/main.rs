//! The AT layer's own tests: the digester byte for byte, chunking-independent, total; the
//! session over whole answers of real modules, chunking-independent.

mod digester;
mod session;
