//! The AT layer's own tests: the digester byte for byte, chunking-independent, total.

mod digester;
