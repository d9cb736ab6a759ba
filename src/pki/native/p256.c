/*
 * ECDSA P-256/SHA-256 verification from a raw public point, and signing with a key loaded once:
 * the signing hot path.
 *
 * Node 20's only way to verify takes a KeyObject, and OpenSSL 3.0 builds one from a public point
 * with a full key check (a scalar multiplication by the group order, about the cost of a second
 * verify); P-256 has cofactor 1, so an on-curve check is all a public key needs. This calls the
 * OpenSSL that Node itself exports, so it adds no library of its own.
 *
 * Signing has the same shape: node:crypto's sign() looks the algorithms up in OpenSSL 3's
 * providers on every call, about twice the cost of the signature itself; a CA key loaded once
 * into an EC_KEY signs with ECDSA_sign directly.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <node_api.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>
#include <openssl/sha.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <pthread.h>

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

static void FreeKey(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  EC_KEY_free((EC_KEY *)data);
}

/* p256Signer(sec1Der: Buffer): external handle of a P-256 private key */
static napi_value P256Signer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1], handle;
  void *der;
  size_t derLen;
  const unsigned char *p;
  EC_KEY *key;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_buffer_info(env, args[0], &der, &derLen) != napi_ok) {
    napi_throw_type_error(env, NULL, "p256Signer(sec1Der) takes a Buffer");
    return NULL;
  }
  p = der;
  key = d2i_ECPrivateKey(NULL, &p, (long)derLen);
  if (!key || EC_GROUP_get_curve_name(EC_KEY_get0_group(key)) != NID_X9_62_prime256v1 || EC_KEY_check_key(key) != 1) {
    EC_KEY_free(key);
    napi_throw_error(env, NULL, "p256Signer: not a valid P-256 private key (SEC1 DER)");
    return NULL;
  }
  napi_create_external(env, key, FreeKey, NULL, &handle);
  return handle;
}

/* signP256Sha256(signer, message: Buffer): Buffer (DER ECDSA signature) */
static napi_value SignP256Sha256(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], result;
  void *key, *message, *out;
  size_t messageLen;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  unsigned char sig[80];
  unsigned int sigLen = 0;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_external(env, args[0], &key) != napi_ok ||
      napi_get_buffer_info(env, args[1], &message, &messageLen) != napi_ok) {
    napi_throw_type_error(env, NULL, "signP256Sha256(signer, message) takes a signer and a Buffer");
    return NULL;
  }
  SHA256(message, messageLen, digest);
  if ((size_t)ECDSA_size((EC_KEY *)key) > sizeof sig || ECDSA_sign(0, digest, sizeof digest, sig, &sigLen, (EC_KEY *)key) != 1) {
    napi_throw_error(env, NULL, "signP256Sha256: signing failed");
    return NULL;
  }
  napi_create_buffer_copy(env, sigLen, sig, &out, &result);
  return result;
}

/*
 * generateP256(): Buffer of 97 bytes, the private scalar (32, big-endian) then the public point
 * (65, uncompressed). node:crypto's ECDH makes a key in three calls, each through OpenSSL 3's
 * providers; this is one EC_KEY_generate_key from OpenSSL's own random generator.
 */
static napi_value GenerateP256(napi_env env, napi_callback_info info) {
  napi_value result;
  void *out;
  unsigned char buf[97];
  EC_KEY *key = EC_KEY_new();
  int ok = key && EC_KEY_set_group(key, p256) == 1 && EC_KEY_generate_key(key) == 1 &&
           BN_bn2binpad(EC_KEY_get0_private_key(key), buf, 32) == 32 &&
           EC_POINT_point2oct(p256, EC_KEY_get0_public_key(key), POINT_CONVERSION_UNCOMPRESSED, buf + 32, 65, NULL) == 65;
  (void)info;
  EC_KEY_free(key);
  if (!ok) {
    napi_throw_error(env, NULL, "generateP256: key generation failed");
    return NULL;
  }
  napi_create_buffer_copy(env, sizeof buf, buf, &out, &result);
  OPENSSL_cleanse(buf, sizeof buf);
  return result;
}

void RegisterSyncfs(napi_env env, napi_value exports); /* src/common/native/syncfs.c */

static pthread_once_t p256Once = PTHREAD_ONCE_INIT;
static void InitP256(void) { p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1); }

/* Loaded once per thread that requires it (the main thread, the file store's worker): the group is shared. */
NAPI_MODULE_INIT() {
  napi_value fn;
  RegisterSyncfs(env, exports);
  pthread_once(&p256Once, InitP256);
  if (!p256) return exports; /* no P-256 functions: callers fall back to node:crypto */
  napi_create_function(env, "verifyP256Sha256", NAPI_AUTO_LENGTH, VerifyP256Sha256, NULL, &fn);
  napi_set_named_property(env, exports, "verifyP256Sha256", fn);
  napi_create_function(env, "p256Signer", NAPI_AUTO_LENGTH, P256Signer, NULL, &fn);
  napi_set_named_property(env, exports, "p256Signer", fn);
  napi_create_function(env, "signP256Sha256", NAPI_AUTO_LENGTH, SignP256Sha256, NULL, &fn);
  napi_set_named_property(env, exports, "signP256Sha256", fn);
  napi_create_function(env, "generateP256", NAPI_AUTO_LENGTH, GenerateP256, NULL, &fn);
  napi_set_named_property(env, exports, "generateP256", fn);
  return exports;
}
