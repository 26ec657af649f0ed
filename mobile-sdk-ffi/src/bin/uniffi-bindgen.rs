//! uniffi's generator, built from the same pinned uniffi as the library so
//! the bindings always match its scaffolding (`scripts/bindings` runs it).

fn main() {
    uniffi::uniffi_bindgen_main()
}
