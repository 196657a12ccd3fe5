//! Cross-format tests live in the format modules' test files.
