//! `rustbpe`: a byte-level BPE tokenizer *trainer* for Python, written in Rust.
//!
//! Training a 65K-token vocabulary on billions of characters is too slow in pure Python, so this
//! crate does it in Rust; the result (`get_mergeable_ranks()`) is handed to tiktoken, which does
//! the fast encoding at inference. `encode` here is a simple reference encoder used for testing.
//!
//! This file is only the Python binding (PyO3): argument checks, streaming the Python iterator,
//! and releasing the GIL around the heavy work. The algorithm lives in `bpe.rs`.
//!
//! ```python
//! import rustbpe
//! tok = rustbpe.Tokenizer()
//! tok.train_from_iterator(iter_of_strings, vocab_size=65536, pattern=rustbpe.NANOCHAT_PATTERN)
//! ranks = tok.get_mergeable_ranks()   # [(b"\x00", 0), ..., (b" the", 270), ...]
//! ```

// fancy_regex::Error is big, but errors are rare (a pathological regex backtrack), so no boxing
#![allow(clippy::result_large_err)]

pub mod bpe;

use ahash::AHashMap;
use fancy_regex::Regex;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyUserWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use rayon::prelude::*;
use std::ffi::CString;

use bpe::Pair;

fn regex_error(e: fancy_regex::Error) -> PyErr {
    PyValueError::new_err(format!("regex error while splitting text: {e}"))
}

/// A byte-level BPE tokenizer: 256 byte tokens plus the merges learned by `train_from_iterator`.
#[pyclass(module = "rustbpe")]
pub struct Tokenizer {
    pattern: String,
    regex: Option<Regex>,       // None until trained
    merges: Vec<Pair>,          // merges[i] made token 256 + i
    ranks: AHashMap<Pair, u32>, // pair -> merged id, for encode
}

impl Tokenizer {
    fn trained_regex(&self) -> PyResult<&Regex> {
        self.regex.as_ref().ok_or_else(|| {
            PyRuntimeError::new_err("this Tokenizer is not trained yet: call train_from_iterator(...) first")
        })
    }
}

#[pymethods]
impl Tokenizer {
    #[new]
    fn new() -> Self {
        Tokenizer { pattern: String::new(), regex: None, merges: Vec::new(), ranks: AHashMap::new() }
    }

    /// Train on the strings produced by `iterator` until the vocabulary has `vocab_size` tokens
    /// (256 bytes + vocab_size - 256 merges; no special tokens). `pattern` is the split regex
    /// (default: GPT-4's). Strings are pulled `buffer_size` at a time while holding the GIL, then
    /// split and counted in parallel with the GIL released. If the text runs out of pairs to merge
    /// first, training stops early with a UserWarning; `get_mergeable_ranks()` then has fewer
    /// entries than vocab_size. Training again replaces the previous vocabulary.
    #[pyo3(signature = (iterator, vocab_size, buffer_size = 8192, pattern = None))]
    fn train_from_iterator(
        &mut self,
        py: Python<'_>,
        iterator: &Bound<'_, PyAny>,
        vocab_size: i64,
        buffer_size: i64,
        pattern: Option<String>,
    ) -> PyResult<()> {
        // check every argument before consuming anything from the iterator
        if vocab_size < 256 {
            return Err(PyValueError::new_err(format!(
                "vocab_size must be at least 256 (the 256 byte tokens), got {vocab_size}"
            )));
        }
        if buffer_size < 1 {
            return Err(PyValueError::new_err(format!("buffer_size must be at least 1, got {buffer_size}")));
        }
        let pattern = pattern.unwrap_or_else(|| bpe::GPT4_PATTERN.to_string());
        let regex = Regex::new(&pattern)
            .map_err(|e| PyValueError::new_err(format!("invalid split pattern {pattern:?}: {e}")))?;
        let mut iter = iterator.try_iter()?; // TypeError if not iterable

        // 1. Stream: fill a buffer of strings (GIL held), then split + count them in parallel
        //    without the GIL, and fold the batch counts into the global chunk -> count map.
        let mut chunk_counts: AHashMap<String, i64> = AHashMap::new();
        let mut buffer: Vec<String> = Vec::with_capacity((buffer_size as usize).min(1 << 16));
        let mut position: usize = 0; // index of the next item, for error messages
        let mut exhausted = false;
        while !exhausted {
            buffer.clear();
            while buffer.len() < buffer_size as usize {
                let Some(item) = iter.next() else {
                    exhausted = true;
                    break;
                };
                let item = item?; // an exception raised by the iterator propagates as is
                let text = item.cast::<PyString>().map_err(|_| {
                    let type_name = item.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
                    PyTypeError::new_err(format!(
                        "train_from_iterator expects an iterator of str, but item {position} is of type {type_name}"
                    ))
                })?;
                buffer.push(text.to_str()?.to_owned());
                position += 1;
            }
            if buffer.is_empty() {
                break;
            }
            py.detach(|| -> PyResult<()> {
                let batch = bpe::count_chunks(&buffer, &regex).map_err(regex_error)?;
                for (chunk, n) in batch {
                    match chunk_counts.get_mut(chunk) {
                        Some(total) => *total += n,
                        None => {
                            chunk_counts.insert(chunk.to_owned(), n);
                        }
                    }
                }
                Ok(())
            })?;
        }
        if chunk_counts.is_empty() {
            return Err(PyValueError::new_err(format!(
                "train_from_iterator received no text: {position} strings, all empty (or the iterator was empty)"
            )));
        }

        // 2. The merges, without the GIL.
        let n_merges = (vocab_size - 256) as usize;
        let merges = py.detach(|| bpe::Trainer::new(chunk_counts).train(n_merges));
        if merges.len() < n_merges {
            let msg = format!(
                "the text has no pairs left to merge after {} merges: the vocabulary has {} tokens, not {vocab_size}",
                merges.len(),
                256 + merges.len()
            );
            PyErr::warn(py, &py.get_type::<PyUserWarning>(), &CString::new(msg).unwrap(), 1)?;
        }

        self.ranks = bpe::merge_ranks(&merges);
        self.merges = merges;
        self.pattern = pattern;
        self.regex = Some(regex);
        Ok(())
    }

    /// The split pattern used in training ("" before training).
    fn get_pattern(&self) -> String {
        self.pattern.clone()
    }

    /// [(token bytes, id)] for the 256 bytes (id = byte value) then every merge in id order:
    /// exactly tiktoken's `mergeable_ranks` (use `dict(...)`).
    fn get_mergeable_ranks<'py>(&self, py: Python<'py>) -> PyResult<Vec<(Bound<'py, PyBytes>, u32)>> {
        self.trained_regex()?;
        Ok(bpe::token_bytes(&self.merges)
            .iter()
            .enumerate()
            .map(|(id, bytes)| (PyBytes::new(py, bytes), id as u32))
            .collect())
    }

    /// Token ids of `text` (reference encoder: per chunk, merge the lowest-id pair until none applies).
    fn encode(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        let regex = self.trained_regex()?;
        py.detach(|| bpe::encode(text, regex, &self.ranks)).map_err(regex_error)
    }

    /// `[encode(t) for t in texts]`, in parallel over texts with the GIL released.
    fn batch_encode(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Vec<Vec<u32>>> {
        let regex = self.trained_regex()?;
        py.detach(|| {
            texts.par_iter().map(|t| bpe::encode(t, regex, &self.ranks)).collect::<Result<Vec<_>, _>>()
        })
        .map_err(regex_error)
    }

    fn __repr__(&self) -> String {
        format!("rustbpe.Tokenizer(vocab_size={}, trained={})", 256 + self.merges.len(), self.regex.is_some())
    }
}

#[pymodule]
fn rustbpe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Tokenizer>()?;
    m.add("GPT4_PATTERN", bpe::GPT4_PATTERN)?;
    m.add("NANOCHAT_PATTERN", bpe::NANOCHAT_PATTERN)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
