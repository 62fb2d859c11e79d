//! End-to-end tests of the `brick` CLI.
