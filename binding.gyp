{
  "targets": [
    {
      "target_name": "citadel_native",
      "sources": ["src/pki/native/p256.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
