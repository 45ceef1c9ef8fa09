// Package wire is the wire format of the co-signer's MPC messages: a strict,
// canonical codec over protobuf's wire format and the signed envelope every
// protocol message rides in inside a Signal message.
//
// Canonical means exactly one byte string per message. It matters because
// envelopes are signed and compared: receivers drop duplicates, and two
// validly signed, different encodings for one (ceremony, kind, round, from,
// to) are proof that the sender equivocated. If a message had several valid
// encodings, re-encoding would change signed bytes and a relay could make an
// honest sender look like a cheater. So the Decoder accepts only what the
// Encoder produces: ascending field numbers, each field once (a repeated
// field's elements contiguous), minimal varints, zero values and empty bytes
// omitted, no unknown fields, no trailing bytes.
//
// Generated protobuf code is deliberately not used: proto.Marshal does not
// promise canonical output and proto.Unmarshal accepts many encodings of one
// message (and keeps unknown fields), which is the opposite of what a signed
// format needs.
//
// Nothing here is trusted: every length is checked against the remaining
// input and a caller-given bound before anything is allocated, and decoded
// byte slices are copies, never views into the input buffer.
package wire
