/*
 * ECDSA P-256/SHA-256 signature verification from a raw public point, for the signing hot path.
 *
 * Node 20's only way to verify takes a KeyObject, and OpenSSL 3.0 builds one from a public point
 * with a full key check (a scalar multiplication by the group order, about the cost of a second
 * verify); P-256 has cofactor 1, so an on-curve check is all a public key needs. This calls the
 * OpenSSL that Node itself exports, so it adds no library of its own.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <node_api.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>
#include <openssl/sha.h>

static EC_GROUP *p256;

/* verifyP256Sha256(point: Buffer (65 bytes, 04||X||Y), message: Buffer, derSignature: Buffer): boolean */
static napi_value VerifyP256Sha256(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  void *point, *message, *signature;
  size_t pointLen, messageLen, signatureLen;
  napi_value result;
  int ok = 0;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_buffer_info(env, args[0], &point, &pointLen) != napi_ok ||
      napi_get_buffer_info(env, args[1], &message, &messageLen) != napi_ok ||
      napi_get_buffer_info(env, args[2], &signature, &signatureLen) != napi_ok) {
    napi_throw_type_error(env, NULL, "verifyP256Sha256(point, message, signature) takes three Buffers");
    return NULL;
  }
  if (pointLen == 65 && ((unsigned char *)point)[0] == 0x04 && signatureLen < 0x7fffffff) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    EC_KEY *key = EC_KEY_new();
    EC_POINT *q = EC_POINT_new(p256);
    /* oct2point rejects a point that is not on the curve. */
    if (key && q && EC_KEY_set_group(key, p256) == 1 && EC_POINT_oct2point(p256, q, point, pointLen, NULL) == 1 &&
        EC_KEY_set_public_key(key, q) == 1) {
      SHA256(message, messageLen, digest);
      ok = ECDSA_verify(0, digest, sizeof digest, signature, (int)signatureLen, key) == 1;
    }
    EC_POINT_free(q);
    EC_KEY_free(key);
  }
  napi_get_boolean(env, ok, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  if (!p256) return exports;
  napi_create_function(env, "verifyP256Sha256", NAPI_AUTO_LENGTH, VerifyP256Sha256, NULL, &fn);
  napi_set_named_property(env, exports, "verifyP256Sha256", fn);
  return exports;
}
