//! x87 helper (todo)
