/*
 * AES-256-GCM over a batch of small messages, by OpenSSL's EVP interface
 * (the OpenSSL that node itself links and exports): one cipher context per
 * key, re-initialised with each message's nonce, so the key schedule and
 * GHASH key are set up once per batch instead of once per message.
 *
 * No cryptography is implemented here: every AES-GCM operation, tag check
 * included (OpenSSL compares tags in constant time), is OpenSSL's. This file
 * only loops over offsets and copies bytes.
 *
 * process(keys, newKey, data, offs, aad, aadOffs, keyIdx, nonces, out, status)
 *   keys    Buffer, 32 * k bytes: the keys that may open the values (in order)
 *   newKey  Buffer of 32 bytes, or null (open only: a scan)
 *   data    Buffer: the sealed messages, value i = nonce(12) || ct || tag(16)
 *           at data[offs[2i] .. offs[2i] + offs[2i+1]]
 *   offs    Int32Array, 2 per value
 *   aad     Buffer: additional data; value i opens with
 *           aad[aadOffs[4i] .. +aadOffs[4i+1]] and is re-sealed with
 *           aad[aadOffs[4i+2] .. +aadOffs[4i+3]]
 *   aadOffs Int32Array, 4 per value
 *   keyIdx  Int32Array: per value, the index of the key to try, or -1: every key in order
 *   nonces  Buffer of 12 * n fresh nonces (the caller's CSPRNG), or null
 *   out     Buffer laid out as data (same offsets), or null
 *   status  Int32Array: written per value: the index of the key that
 *           opened it, -1 (no key opens it), -2 (malformed offsets)
 * Returns the number of values opened.
 *
 * sumSha256(data, offs, acc[, groups])
 *   Adds SHA-256(data[offs[2i] .. +offs[2i+1]]) of every item i, each read
 *   as a big-endian 256-bit number, to acc (32 bytes, big-endian), modulo
 *   2^256: an order-independent digest of many values. With groups (an
 *   Int32Array, one index per item), acc holds 32 bytes per group and item
 *   i is added to the group groups[i]: a digest per group of places.
 */
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KEY_BYTES 32
#define NONCE_BYTES 12
#define TAG_BYTES 16
#define MAX_KEYS 64

typedef struct {
  uint8_t *p;
  size_t n;
} bytes_t;

static int get_bytes(napi_env env, napi_value v, bytes_t *b, int nullable) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (nullable && (t == napi_null || t == napi_undefined)) {
    b->p = NULL;
    b->n = 0;
    return 1;
  }
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_typedarray_type tt;
  size_t len;
  void *data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &tt, &len, &data, &ab, &off) != napi_ok) return 0;
  if (tt != napi_uint8_array) return 0;
  b->p = (uint8_t *)data;
  b->n = len;
  return 1;
}

static int get_i32(napi_env env, napi_value v, int32_t **p, size_t *n) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_typedarray_type tt;
  void *data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &tt, n, &data, &ab, &off) != napi_ok) return 0;
  if (tt != napi_int32_array) return 0;
  *p = (int32_t *)data;
  return 1;
}

static int in_range(int32_t off, int32_t len, size_t size) {
  return off >= 0 && len >= 0 && (size_t)off <= size && (size_t)len <= size - (size_t)off;
}

/* Opens one message with ctx (key already set); writes the plaintext to pt. */
static int gcm_open(EVP_CIPHER_CTX *ctx, const uint8_t *msg, int len, const uint8_t *aad, int aadLen, uint8_t *pt) {
  int n = 0, f = 0;
  int ctLen = len - NONCE_BYTES - TAG_BYTES;
  if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, msg) != 1) return 0;
  if (aadLen > 0 && EVP_DecryptUpdate(ctx, NULL, &n, aad, aadLen) != 1) return 0;
  if (ctLen > 0 && EVP_DecryptUpdate(ctx, pt, &n, msg + NONCE_BYTES, ctLen) != 1) return 0;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, (void *)(msg + len - TAG_BYTES)) != 1) return 0;
  return EVP_DecryptFinal_ex(ctx, pt + (ctLen > 0 ? n : 0), &f) == 1;
}

static int gcm_seal(EVP_CIPHER_CTX *ctx, const uint8_t *nonce, const uint8_t *pt, int ptLen, const uint8_t *aad, int aadLen, uint8_t *out) {
  int n = 0, f = 0;
  if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1) return 0;
  if (aadLen > 0 && EVP_EncryptUpdate(ctx, NULL, &n, aad, aadLen) != 1) return 0;
  memcpy(out, nonce, NONCE_BYTES);
  if (ptLen > 0 && EVP_EncryptUpdate(ctx, out + NONCE_BYTES, &n, pt, ptLen) != 1) return 0;
  if (EVP_EncryptFinal_ex(ctx, out + NONCE_BYTES + (ptLen > 0 ? n : 0), &f) != 1) return 0;
  return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, out + NONCE_BYTES + ptLen) == 1;
}

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static napi_value process_batch(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 10) return fail(env, "gcm_batch.process needs 10 arguments");
  bytes_t keys, newKey, data, aad, nonces, out;
  int32_t *offs, *aadOffs, *keyIdx, *status;
  size_t nOffs, nAadOffs, nKeyIdx, nStatus;
  if (!get_bytes(env, argv[0], &keys, 0) || !get_bytes(env, argv[1], &newKey, 1) || !get_bytes(env, argv[2], &data, 0) || !get_i32(env, argv[3], &offs, &nOffs) ||
      !get_bytes(env, argv[4], &aad, 0) || !get_i32(env, argv[5], &aadOffs, &nAadOffs) || !get_i32(env, argv[6], &keyIdx, &nKeyIdx) || !get_bytes(env, argv[7], &nonces, 1) ||
      !get_bytes(env, argv[8], &out, 1) || !get_i32(env, argv[9], &status, &nStatus)) {
    return fail(env, "gcm_batch.process: an argument has the wrong type");
  }
  size_t count = nStatus;
  size_t nKeys = keys.n / KEY_BYTES;
  int reseal = newKey.p != NULL;
  if (keys.n % KEY_BYTES != 0 || nKeys == 0 || nKeys > MAX_KEYS) return fail(env, "gcm_batch.process: keys must be 1 to 64 keys of 32 bytes");
  if (nOffs != 2 * count || nAadOffs != 4 * count || nKeyIdx != count) return fail(env, "gcm_batch.process: offset arrays do not match the value count");
  if (reseal && (newKey.n != KEY_BYTES || nonces.n != NONCE_BYTES * count || out.n != data.n)) return fail(env, "gcm_batch.process: new key, nonces or output have the wrong size");

  EVP_CIPHER_CTX *dec[MAX_KEYS] = {0};
  EVP_CIPHER_CTX *enc = NULL;
  uint8_t *pt = NULL;
  size_t maxLen = 0;
  int32_t opened = 0;
  int ok = 1;
  for (size_t i = 0; i < count; i++) {
    if (in_range(offs[2 * i], offs[2 * i + 1], data.n) && (size_t)offs[2 * i + 1] > maxLen) maxLen = offs[2 * i + 1];
  }
  pt = (uint8_t *)malloc(maxLen + 1);
  if (!pt) ok = 0;
  for (size_t k = 0; ok && k < nKeys; k++) {
    dec[k] = EVP_CIPHER_CTX_new();
    if (!dec[k] || EVP_DecryptInit_ex(dec[k], EVP_aes_256_gcm(), NULL, keys.p + k * KEY_BYTES, NULL) != 1) ok = 0;
  }
  if (ok && reseal) {
    enc = EVP_CIPHER_CTX_new();
    if (!enc || EVP_EncryptInit_ex(enc, EVP_aes_256_gcm(), NULL, newKey.p, NULL) != 1) ok = 0;
  }
  for (size_t i = 0; ok && i < count; i++) {
    int32_t off = offs[2 * i], len = offs[2 * i + 1];
    int32_t oa = aadOffs[4 * i], la = aadOffs[4 * i + 1], na = aadOffs[4 * i + 2], nl = aadOffs[4 * i + 3];
    int32_t want = keyIdx[i];
    status[i] = -2;
    if (!in_range(off, len, data.n) || len < NONCE_BYTES + TAG_BYTES || !in_range(oa, la, aad.n) || (reseal && !in_range(na, nl, aad.n)) || want < -1 || want >= (int32_t)nKeys) continue;
    status[i] = -1;
    for (size_t k = (want < 0 ? 0 : (size_t)want); k < (want < 0 ? nKeys : (size_t)want + 1); k++) {
      if (gcm_open(dec[k], data.p + off, len, aad.p + oa, la, pt)) {
        status[i] = (int32_t)k;
        break;
      }
    }
    if (status[i] < 0) continue;
    opened++;
    if (reseal && !gcm_seal(enc, nonces.p + NONCE_BYTES * i, pt, len - NONCE_BYTES - TAG_BYTES, aad.p + na, nl, out.p + off)) ok = 0;
  }
  if (pt) {
    OPENSSL_cleanse(pt, maxLen + 1);
    free(pt);
  }
  for (size_t k = 0; k < nKeys; k++) EVP_CIPHER_CTX_free(dec[k]);
  EVP_CIPHER_CTX_free(enc);
  if (!ok) return fail(env, "gcm_batch.process: OpenSSL failed");
  napi_value result;
  napi_create_int32(env, opened, &result);
  return result;
}

static napi_value sum_sha256(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) return fail(env, "gcm_batch.sumSha256 needs 3 or 4 arguments");
  bytes_t data, acc;
  int32_t *offs;
  size_t nOffs;
  int32_t *groups = NULL;
  size_t nGroups = 0;
  if (!get_bytes(env, argv[0], &data, 0) || !get_i32(env, argv[1], &offs, &nOffs) || !get_bytes(env, argv[2], &acc, 0) || acc.n % 32 != 0 || acc.n == 0 || nOffs % 2 != 0) {
    return fail(env, "gcm_batch.sumSha256: an argument has the wrong type or size");
  }
  if (argc == 4 && (!get_i32(env, argv[3], &groups, &nGroups) || nGroups != nOffs / 2)) return fail(env, "gcm_batch.sumSha256: groups must hold one index per item");
  if (!groups && acc.n != 32) return fail(env, "gcm_batch.sumSha256: without groups the sum is 32 bytes");
  for (size_t i = 0; i < nOffs / 2; i++) {
    if (!in_range(offs[2 * i], offs[2 * i + 1], data.n)) return fail(env, "gcm_batch.sumSha256: an offset is out of range");
    if (groups && (groups[i] < 0 || (size_t)groups[i] >= acc.n / 32)) return fail(env, "gcm_batch.sumSha256: a group index is out of range");
  }
  /* One context for the whole call (EVP_Digest would set one up, and look the algorithm up, per item). */
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  const EVP_MD *md = EVP_sha256();
  int ok = ctx != NULL;
  uint8_t h[32];
  unsigned int hl = 0;
  for (size_t i = 0; ok && i < nOffs / 2; i++) {
    if (EVP_DigestInit_ex(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, data.p + offs[2 * i], (size_t)offs[2 * i + 1]) != 1 || EVP_DigestFinal_ex(ctx, h, &hl) != 1 || hl != 32) {
      ok = 0;
      break;
    }
    uint8_t *sum = acc.p + (groups ? 32 * (size_t)groups[i] : 0);
    unsigned int carry = 0;
    for (int j = 31; j >= 0; j--) {
      unsigned int v = (unsigned int)sum[j] + h[j] + carry;
      sum[j] = (uint8_t)v;
      carry = v >> 8;
    }
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) return fail(env, "gcm_batch.sumSha256: OpenSSL failed");
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "sumSha256", NAPI_AUTO_LENGTH, sum_sha256, NULL, &fn);
  napi_set_named_property(env, exports, "sumSha256", fn);
  napi_create_function(env, "process", NAPI_AUTO_LENGTH, process_batch, NULL, &fn);
  napi_set_named_property(env, exports, "process", fn);
  napi_value v;
  napi_create_string_utf8(env, OpenSSL_version(OPENSSL_VERSION), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, exports, "openssl", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
