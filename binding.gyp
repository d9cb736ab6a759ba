{
  "targets": [
    {
      "target_name": "citadel_native",
      "sources": ["src/pki/native/p256_verify.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
