//! Roster tests (MS-10, MS-11, MS-12).
