#include "berth_crypto.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

int berth_x25519_public(const uint8_t private_key[32], uint8_t public_key[32]) {
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, private_key, 32);
    if (key == NULL) return -1;
    size_t length = 32;
    int ok = EVP_PKEY_get_raw_public_key(key, public_key, &length) == 1 && length == 32;
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}

int berth_x25519_generate(uint8_t private_key[32]) {
    if (RAND_bytes(private_key, 32) != 1) return -1;
    private_key[0] &= 248;
    private_key[31] &= 127;
    private_key[31] |= 64;
    return 0;
}
