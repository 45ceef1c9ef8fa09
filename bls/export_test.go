package bls

// ExpandMessageXMDForTest exposes the expander to the known-answer test.
var ExpandMessageXMDForTest = expandMessageXMD
