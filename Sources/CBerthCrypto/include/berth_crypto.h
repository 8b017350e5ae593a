#ifndef BERTH_CRYPTO_H
#define BERTH_CRYPTO_H

#include <stdint.h>

/// X25519 (RFC 7748), as WireGuard's keys are, through the system's OpenSSL
/// (libcrypto). Kept behind this header so that no OpenSSL type meets
/// swift-nio-ssl's BoringSSL in a Swift module.

/// Writes the public key of the 32-byte private key `private_key` to `public_key`.
/// Returns 0, or -1 when libcrypto refuses the key.
int berth_x25519_public(const uint8_t private_key[32], uint8_t public_key[32]);

/// Writes a new private key from the system's random source to `private_key`
/// (clamped as RFC 7748 and `wg genkey` do). Returns 0, or -1.
int berth_x25519_generate(uint8_t private_key[32]);

#endif
