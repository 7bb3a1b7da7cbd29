use pyo3::prelude::*;

#[pyfunction]
fn hello() -> &'static str { "hi" }

#[pymodule]
fn rustbpe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hello, m)?)?;
    Ok(())
}
