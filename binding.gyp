{
  "targets": [
    {
      "target_name": "citadel_native",
      "sources": ["src/pki/native/p256.c", "src/common/native/syncfs.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
