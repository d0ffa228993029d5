{
  "targets": [
    {
      "target_name": "gcm_batch",
      "sources": ["gcm_batch.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
