/*
 * A PKCS#11 module that sits in front of SoftHSM2 and makes its user PIN behave like a card's:
 * a try counter that locks, and the COUNT_LOW / FINAL_TRY / LOCKED token flags SoftHSM2 never
 * reports. It also logs every C_Login so tests can count tries. Test fixture only: built by
 * softhsm-tests with `cc -shared`, never shipped.
 *
 *   SSMAX_SHIM_TARGET  the real module (default /usr/lib/softhsm/libsofthsm2.so)
 *   SSMAX_SHIM_STATE   file holding "tries max", e.g. "1 3"; absent = no counting
 *   SSMAX_SHIM_LOG     file that gets one line per C_Login ("login <user type> <rv>") and per
 *                      C_SignInit / C_Sign / C_DecryptInit / C_Decrypt ("<function> <rv>"), so a
 *                      test can check where a context-specific login happened
 *   SSMAX_SHIM_FAULT   file with one fault for the next matching call, consumed when it fires:
 *                      "<function> ckr <hex>"  the call returns that CKR without reaching SoftHSM2
 *                                              (after C_SignInit / C_DecryptInit succeeded)
 *                      "<function> sleep <s>"  the call waits, then goes through
 *                      "<function> segv 0"     the call crashes the process (a write through NULL)
 *                      "<function> abort 0"    the call aborts the process (abort(), SIGABRT)
 *                      functions: C_Sign, C_Decrypt, C_GetTokenInfo, C_FindObjects, C_Initialize
 *                      A fourth word "worker" arms it only in the agent's module worker
 *                      (`ssmax-card module-worker`), not in the presence probes beside it.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST shim;
static CK_FUNCTION_LIST_PTR real;

static int fault(const char *fn, CK_RV *rv);

static int read_state(long *tries, long *max) {
    const char *p = getenv("SSMAX_SHIM_STATE");
    FILE *f = p ? fopen(p, "r") : NULL;
    if (!f) return 0;
    int ok = fscanf(f, "%ld %ld", tries, max) == 2;
    fclose(f);
    return ok;
}

static void write_state(long tries, long max) {
    const char *p = getenv("SSMAX_SHIM_STATE");
    FILE *f = p ? fopen(p, "w") : NULL;
    if (!f) return;
    fprintf(f, "%ld %ld\n", tries, max);
    fclose(f);
}

static void log_line(const char *what, CK_RV rv) {
    const char *p = getenv("SSMAX_SHIM_LOG");
    FILE *f = p ? fopen(p, "a") : NULL;
    if (!f) return;
    fprintf(f, "%s %lu\n", what, (unsigned long)rv);
    fclose(f);
}

static void log_login(CK_USER_TYPE t, CK_RV rv) {
    char what[32];
    snprintf(what, sizeof what, "login %lu", (unsigned long)t);
    log_line(what, rv);
}

static CK_RV shim_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
    CK_RV rv = real->C_SignInit(h, m, k);
    log_line("C_SignInit", rv);
    return rv;
}

static CK_RV shim_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR s, CK_ULONG_PTR sl) {
    CK_RV rv;
    if (s && fault("C_Sign", &rv)) {
        /* The card is gone mid-operation: end the operation SoftHSM2 still holds. */
        CK_BYTE junk[1024];
        CK_ULONG jl = sizeof junk;
        real->C_Sign(h, d, dl, junk, &jl);
        log_line("C_Sign", rv);
        return rv;
    }
    rv = real->C_Sign(h, d, dl, s, sl);
    /* A length query (s == NULL) is not the signing operation itself. */
    log_line(s ? "C_Sign" : "C_Sign(length)", rv);
    return rv;
}

static CK_RV shim_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
    CK_RV rv = real->C_DecryptInit(h, m, k);
    log_line("C_DecryptInit", rv);
    return rv;
}

static CK_RV shim_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR c, CK_ULONG cl, CK_BYTE_PTR d, CK_ULONG_PTR dl) {
    CK_RV rv;
    if (d && fault("C_Decrypt", &rv)) {
        CK_BYTE junk[1024];
        CK_ULONG jl = sizeof junk;
        real->C_Decrypt(h, c, cl, junk, &jl);
        log_line("C_Decrypt", rv);
        return rv;
    }
    rv = real->C_Decrypt(h, c, cl, d, dl);
    log_line(d ? "C_Decrypt" : "C_Decrypt(length)", rv);
    return rv;
}

/* Whether this process is the agent's module worker: an argument "module-worker". */
static int in_worker(void) {
    char buf[4096];
    FILE *f = fopen("/proc/self/cmdline", "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
        buf[n] = 0;
        if (strcmp(buf + i, "module-worker") == 0) return 1;
    }
    return 0;
}

/* A fault for `fn`: returns 1 and sets *rv when the call must fail, sleeps when told to. */
static int fault(const char *fn, CK_RV *rv) {
    const char *p = getenv("SSMAX_SHIM_FAULT");
    FILE *f = p ? fopen(p, "r") : NULL;
    if (!f) return 0;
    char name[64] = {0}, kind[16] = {0}, where[16] = {0};
    unsigned long arg = 0;
    int n = fscanf(f, "%63s %15s %lx %15s", name, kind, &arg, where);
    fclose(f);
    if (n < 3 || strcmp(name, fn) != 0) return 0;
    if (n == 4 && strcmp(where, "worker") == 0 && !in_worker()) return 0;
    FILE *w = fopen(p, "w"); /* fire once */
    if (w) fclose(w);
    if (strcmp(kind, "sleep") == 0) {
        sleep((unsigned)arg);
        return 0;
    }
    if (strcmp(kind, "segv") == 0) {
        *(volatile int *)(uintptr_t)arg = 1; /* arg is 0: the crash a bad driver has */
        return 0;
    }
    if (strcmp(kind, "abort") == 0) abort();
    *rv = (CK_RV)arg;
    return 1;
}

static CK_RV shim_Initialize(CK_VOID_PTR args) {
    CK_RV frv;
    if (fault("C_Initialize", &frv)) return frv;
    return real->C_Initialize(args);
}

static CK_RV shim_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR n) {
    CK_RV frv;
    if (fault("C_FindObjects", &frv)) return frv;
    return real->C_FindObjects(h, out, max, n);
}

static CK_RV shim_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
    CK_RV frv;
    if (fault("C_GetTokenInfo", &frv)) return frv;
    CK_RV rv = real->C_GetTokenInfo(slot, info);
    long tries, max;
    if (rv != CKR_OK || !read_state(&tries, &max)) return rv;
    info->flags &= ~(CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED);
    if (tries <= 0) info->flags |= CKF_USER_PIN_LOCKED;
    else if (tries == 1) info->flags |= CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_COUNT_LOW;
    else if (tries < max) info->flags |= CKF_USER_PIN_COUNT_LOW;
    return rv;
}

static CK_RV shim_Login(CK_SESSION_HANDLE h, CK_USER_TYPE t, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
    long tries, max;
    int counting = read_state(&tries, &max);
    CK_RV rv;
    if (counting && tries <= 0) {
        rv = CKR_PIN_LOCKED;
    } else {
        rv = real->C_Login(h, t, pin, len);
        if (counting && rv == CKR_PIN_INCORRECT) write_state(tries - 1, max);
        if (counting && rv == CKR_OK && t == CKU_USER) write_state(max, max);
    }
    log_login(t, rv);
    return rv;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) {
    const char *target = getenv("SSMAX_SHIM_TARGET");
    void *lib = dlopen(target ? target : "/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return CKR_GENERAL_ERROR;
    CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR) = (CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(lib, "C_GetFunctionList");
    if (!get || get(&real) != CKR_OK) return CKR_GENERAL_ERROR;
    memcpy(&shim, real, sizeof shim);
    shim.C_GetTokenInfo = shim_GetTokenInfo;
    shim.C_Initialize = shim_Initialize;
    shim.C_FindObjects = shim_FindObjects;
    shim.C_Login = shim_Login;
    shim.C_SignInit = shim_SignInit;
    shim.C_Sign = shim_Sign;
    shim.C_DecryptInit = shim_DecryptInit;
    shim.C_Decrypt = shim_Decrypt;
    shim.C_GetFunctionList = C_GetFunctionList;
    *out = &shim;
    return CKR_OK;
}
