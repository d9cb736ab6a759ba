/*
 * The file store's filesystem calls that Node does not expose.
 *
 * syncfs(2) off the event loop: makes everything written to one filesystem durable in a single
 * call. The file store group-commits many small files this way instead of an fsync per file
 * (or a `sync -f` child process per flush, whose fork costs milliseconds of the main thread).
 *
 * markTopDir: `chattr +T`, the ext2/3/4 hint that a directory is the top of unrelated
 * hierarchies, so the Orlov allocator spreads its subdirectories over block groups.
 *
 * tryLock: flock(2) of an open file, exclusive and non-blocking: the file store's writer lock,
 * released by the kernel when its process ends, however it ends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <node_api.h>

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int err;
} SyncfsJob;

static void Execute(napi_env env, void *data) {
  SyncfsJob *job = data;
  (void)env;
  job->err = syncfs(job->fd) == 0 ? 0 : errno;
}

static void Complete(napi_env env, napi_status status, void *data) {
  SyncfsJob *job = data;
  napi_value value;
  if (status == napi_ok && job->err == 0) {
    napi_get_undefined(env, &value);
    napi_resolve_deferred(env, job->deferred, value);
  } else {
    napi_value message;
    napi_create_string_utf8(env, job->err ? strerror(job->err) : "syncfs was cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &value);
    napi_reject_deferred(env, job->deferred, value);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

/* syncfs(fd: number): Promise<void> */
static napi_value Syncfs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1], promise, name;
  int32_t fd;
  SyncfsJob *job;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_int32(env, args[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "syncfs(fd) takes a file descriptor");
    return NULL;
  }
  job = calloc(1, sizeof *job);
  if (!job) {
    napi_throw_error(env, NULL, "syncfs: out of memory");
    return NULL;
  }
  job->fd = fd;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "citadel:syncfs", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, Execute, Complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

/*
 * markTopDir(path: string): string -- sets FS_TOPDIR_FL on a directory. Returns "" when the flag
 * is set (or already was), else the reason it cannot be (a filesystem without the flag answers
 * ENOTTY or EOPNOTSUPP); never throws for that, since the flag is only a placement hint.
 */
static napi_value MarkTopDir(napi_env env, napi_callback_info info) {
  size_t argc = 1, len;
  napi_value args[1], result;
  char path[4096];
  int fd, flags, err = 0;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_string_utf8(env, args[0], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "markTopDir(path) takes a directory path");
    return NULL;
  }
  fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) err = errno;
  else {
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) err = errno;
    else if (!(flags & FS_TOPDIR_FL)) {
      flags |= FS_TOPDIR_FL;
      if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) err = errno;
    }
    close(fd);
  }
  napi_create_string_utf8(env, err ? strerror(err) : "", NAPI_AUTO_LENGTH, &result);
  return result;
}

/* tryLock(fd: number): string -- "" when this descriptor now holds the lock, "busy" when another does, else the reason. */
static napi_value TryLock(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1], result;
  int32_t fd;
  const char *answer = "";
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_int32(env, args[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "tryLock(fd) takes a file descriptor");
    return NULL;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) answer = errno == EWOULDBLOCK ? "busy" : strerror(errno);
  napi_create_string_utf8(env, answer, NAPI_AUTO_LENGTH, &result);
  return result;
}

void RegisterSyncfs(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "syncfs", NAPI_AUTO_LENGTH, Syncfs, NULL, &fn);
  napi_set_named_property(env, exports, "syncfs", fn);
  napi_create_function(env, "markTopDir", NAPI_AUTO_LENGTH, MarkTopDir, NULL, &fn);
  napi_set_named_property(env, exports, "markTopDir", fn);
  napi_create_function(env, "tryLock", NAPI_AUTO_LENGTH, TryLock, NULL, &fn);
  napi_set_named_property(env, exports, "tryLock", fn);
}
