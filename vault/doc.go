// Package vault is the envelope-encryption core of Haldir's secret vault,
// plus the two helpers the MCP proxy needs to use secrets without showing
// them to the model: placeholder resolution and redaction.
//
// # Envelope encryption
//
// Every secret version gets its own random 256-bit data key (DEK). The
// value is sealed with the DEK under AES-256-GCM, and the DEK is wrapped,
// also with AES-256-GCM, by a versioned key-encryption key (KEK). Both
// ciphertexts are bound to the secret they belong to: the additional
// authenticated data of each names the tenant, the secret name and the
// secret version (and, for the wrapped DEK, the KEK version), length
// prefixed so that no two different Refs produce the same bytes:
//
//	value AAD = "haldir/vault/v1/value" || u32be len(tenant) || tenant
//	            || u32be len(name) || name || u64be version
//	DEK AAD   = "haldir/vault/v1/dek"   || u32be len(tenant) || tenant
//	            || u32be len(name) || name || u64be version || u32be kekVersion
//
// A ciphertext copied to another tenant, name or version therefore fails
// to open. The Sealed value belongs in the ledger; the WrappedKey belongs
// in a separate, deletable table. Deleting a WrappedKey crypto-shreds its
// secret version: the Sealed value left in the ledger can no longer be
// opened by anyone, including the holder of the master key.
//
// # Key-encryption keys and rotation
//
// KEK version N derives from a 32-byte master key M (HALDIR_ENCRYPTION_KEY)
// with HKDF-SHA256(secret=M, salt=none, info="haldir/vault/kek/v<N>"),
// N in decimal. A Keyring knows its current KEK version and which master
// key each earlier version derives from. Rotation adds a KEK version:
// Keyring.Rotate keeps the master key, Keyring.RotateMaster starts using a
// new one and keeps the old for the versions before. New data keys are
// wrapped under the current version; Keyring.Rewrap moves an existing
// WrappedKey to the current version without touching its Sealed value.
//
// # Stored formats
//
// Both formats start with a format byte (1) and are stored as opaque bytes.
// The hint and check fields exist only so that failures can be told apart
// (wrong master key, moved ciphertext, modified ciphertext); they carry no
// security weight, which rests entirely on AES-GCM.
//
//	Sealed (33 to 33+MaxValueSize bytes):
//	  [0]      format = 1
//	  [1:5]    ref hint: SHA-256("haldir/vault/v1/ref" || Ref fields as in the AAD)[:4]
//	  [5:17]   GCM nonce (random)
//	  [17:]    AES-256-GCM(DEK, value, value AAD), tag last
//
//	WrappedKey (exactly 73 bytes):
//	  [0]      format = 1
//	  [1:5]    KEK version, u32 big-endian, >= 1
//	  [5:9]    KEK check: HKDF-SHA256(M, info="haldir/vault/kek-check/v<N>")[:4]
//	  [9:13]   ref hint, as above
//	  [13:25]  GCM nonce (random)
//	  [25:73]  AES-256-GCM(KEK, DEK, DEK AAD), tag last
//
// The ref hint is an unkeyed digest of the tenant, name and version, which
// are stored next to these bytes anyway. The KEK check is a 32-bit HKDF
// output; like the master key Fingerprint it reveals nothing about the key.
//
// # Errors
//
// Failures to parse, seal, open or rewrap wrap one of the package's Err*
// sentinel errors; test them with errors.Is. No error string ever contains
// key material, a secret value or plaintext.
package vault
