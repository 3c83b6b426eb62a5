/* Two loops of the produce path's record checks, in C.
 *
 * scan: the record scanner of record_scan.py. zstd_frame_size: the frame
 * walk of compression.py (python_zstd_frame_size). Same arguments, same
 * results, same errors: the Python versions are the reference and say
 * what is checked; the tests run both on the same inputs. This exists
 * because the produce path reads every record of every batch, and a
 * Python loop over a million records a second costs more than the rest of
 * the broker's work on them; the frame walk is a loop over blocks that a
 * hostile frame makes a quarter of a million long per megabyte.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

enum { DONE = 0, NEED = 1, ERROR = 2 };
enum { REQUIRE_KEY = 1, CHECK_TIMESTAMPS = 2 };
enum { NO_KEY = 0, BAD_TIMESTAMP = 1 };
enum {
    ERR_VARINT = 1,
    ERR_LENGTH = 2,
    ERR_PAST_END = 3,
    ERR_NEGATIVE = 4,
    ERR_LEFTOVER = 5,
    ERR_OFFSET_DELTA = 6,
};
enum {
    F_LENGTH, F_ATTRIBUTES, F_TIMESTAMP, F_OFFSET_DELTA, F_KEY, F_VALUE,
    F_HEADER_COUNT, F_HEADER_KEY, F_HEADER_VALUE,
};

/* A zig-zag varint of `bits` bits (32: at most 5 bytes, 64: at most 10).
 * 1: read, 0: ran into the limit, -1: overlong or overflowing. */
static inline int
read_zigzag(const uint8_t **pp, const uint8_t *limit, int bits, int64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t value = 0;
    int shift = 0;
    for (;;) {
        if (p >= limit)
            return 0;
        uint8_t b = *p++;
        if (shift == 63 && b > 1)
            return -1; /* bits beyond the 64th */
        value |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80)
            break;
        shift += 7;
        if (shift >= bits + 3)
            return -1;
    }
    if (bits == 32 && value >> 32)
        return -1;
    *out = (int64_t)((value >> 1) ^ (0u - (value & 1)));
    *pp = p;
    return 1;
}

static inline int
read_varint(const uint8_t **pp, const uint8_t *limit, int32_t *out)
{
    int64_t v;
    int r = read_zigzag(pp, limit, 32, &v);
    if (r > 0)
        *out = (int32_t)v;
    return r;
}

static inline long long
field_detail(int field, int32_t value)
{
    return ((long long)field << 32) + (long long)(uint32_t)value;
}

static PyObject *
scan(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, end;
    long long index, count, base_ts, ts_lo, ts_hi, max_ts;
    int flags;
    PyObject *errors;

    if (!PyArg_ParseTuple(args, "y*nnLLLLLiLO!:scan", &view, &pos, &end, &index, &count,
                          &base_ts, &ts_lo, &ts_hi, &flags, &max_ts, &PyList_Type, &errors))
        return NULL;
    if (pos < 0 || end > view.len || pos > end) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scan range outside the buffer");
        return NULL;
    }
    const uint8_t *buf = (const uint8_t *)view.buf;
    const uint8_t *p = buf + pos;
    const uint8_t *stop_all = buf + end;
    int require_key = flags & REQUIRE_KEY;
    int check_ts = flags & CHECK_TIMESTAMPS;
    int status = DONE;
    long long a = 0, b = 0;

    while (index < count) {
        const uint8_t *start = p;
        int32_t size, key_size, value_size, headers, n, offset_delta;
        int64_t delta;
        int r;

        r = read_varint(&p, stop_all, &size);
        if (r == 0) {
            status = NEED;
            a = 0;
            p = start;
            break;
        }
        if (r < 0) {
            status = ERROR; a = ERR_VARINT; b = F_LENGTH; p = start;
            break;
        }
        if (size < 0) {
            status = ERROR; a = ERR_LENGTH; b = size; p = start;
            break;
        }
        if ((Py_ssize_t)size > stop_all - p) {
            status = NEED;
            a = (long long)(p - start) + size;
            p = start;
            break;
        }
        const uint8_t *body = p;
        const uint8_t *stop = p + size;

#define FAIL(kind, detail) do { status = ERROR; a = (kind); b = (detail); p = start; goto out; } while (0)
#define VARINT(field, dst) do { if (read_varint(&p, stop, (dst)) <= 0) FAIL(ERR_VARINT, (field)); } while (0)

        if (p >= stop)
            FAIL(ERR_PAST_END, field_detail(F_ATTRIBUTES, 1));
        p++; /* attributes: unused in magic 2 */
        if (read_zigzag(&p, stop, 64, &delta) <= 0)
            FAIL(ERR_VARINT, F_TIMESTAMP);
        VARINT(F_OFFSET_DELTA, &offset_delta);
        VARINT(F_KEY, &key_size);
        if (key_size < -1)
            FAIL(ERR_NEGATIVE, field_detail(F_KEY, key_size));
        if ((Py_ssize_t)key_size > stop - p)
            FAIL(ERR_PAST_END, field_detail(F_KEY, key_size));
        if (key_size > 0)
            p += key_size;
        VARINT(F_VALUE, &value_size);
        if (value_size < -1)
            FAIL(ERR_NEGATIVE, field_detail(F_VALUE, value_size));
        if ((Py_ssize_t)value_size > stop - p)
            FAIL(ERR_PAST_END, field_detail(F_VALUE, value_size));
        if (value_size > 0)
            p += value_size;
        VARINT(F_HEADER_COUNT, &headers);
        if (headers < 0)
            FAIL(ERR_NEGATIVE, field_detail(F_HEADER_COUNT, headers));
        if ((Py_ssize_t)headers > stop - p)
            FAIL(ERR_PAST_END, field_detail(F_HEADER_COUNT, headers));
        for (int32_t h = 0; h < headers; h++) {
            VARINT(F_HEADER_KEY, &n);
            if (n < 0)
                FAIL(ERR_NEGATIVE, field_detail(F_HEADER_KEY, n));
            if ((Py_ssize_t)n > stop - p)
                FAIL(ERR_PAST_END, field_detail(F_HEADER_KEY, n));
            p += n;
            VARINT(F_HEADER_VALUE, &n);
            if (n < -1)
                FAIL(ERR_NEGATIVE, field_detail(F_HEADER_VALUE, n));
            if ((Py_ssize_t)n > stop - p)
                FAIL(ERR_PAST_END, field_detail(F_HEADER_VALUE, n));
            if (n > 0)
                p += n;
        }
        if (p != stop)
            FAIL(ERR_LEFTOVER, ((long long)size << 32) + (long long)(p - body));
        if (offset_delta != index)
            FAIL(ERR_OFFSET_DELTA, offset_delta);
#undef VARINT
#undef FAIL

        /* Java's long addition wraps; so does this one. */
        int64_t ts = (int64_t)((uint64_t)base_ts + (uint64_t)delta);
        if (ts > max_ts)
            max_ts = ts;
        int verdict = -1;
        if (require_key && key_size == -1)
            verdict = NO_KEY;
        else if (check_ts && ts != -1 && (ts < ts_lo || ts > ts_hi))
            verdict = BAD_TIMESTAMP;
        if (verdict >= 0) {
            PyObject *item = Py_BuildValue("(LiL)", index, verdict, (long long)ts);
            if (item == NULL || PyList_Append(errors, item) < 0) {
                Py_XDECREF(item);
                PyBuffer_Release(&view);
                return NULL;
            }
            Py_DECREF(item);
        }
        index++;
    }
out:
    pos = p - buf;
    PyBuffer_Release(&view);
    return Py_BuildValue("(inLLLL)", status, pos, index, max_ts, a, b);
}

/* The size of the zstd frame at the start of buf (header, blocks and
 * checksum), or -1 if buf does not hold a whole, well-formed frame there. */
static PyObject *
zstd_frame_size(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *d = (const uint8_t *)view.buf;
    Py_ssize_t end = view.len, pos;
    Py_ssize_t result = -1;
    static const int dict_sizes[4] = {0, 1, 2, 4};
    static const int content_sizes[4] = {0, 2, 4, 8};

    if (end < 5 || d[0] != 0x28 || d[1] != 0xB5 || d[2] != 0x2F || d[3] != 0xFD)
        goto done;
    uint8_t fhd = d[4];
    int single = (fhd >> 5) & 1;
    if (fhd & 0x08)
        goto done; /* reserved bit */
    pos = 5 + (single ? 0 : 1) + dict_sizes[fhd & 3] + content_sizes[fhd >> 6];
    if ((fhd >> 6) == 0 && single)
        pos += 1;
    for (;;) {
        if (end - pos < 3)
            goto done;
        uint32_t h = d[pos] | (uint32_t)d[pos + 1] << 8 | (uint32_t)d[pos + 2] << 16;
        pos += 3;
        int type = (h >> 1) & 3;
        if (type == 3)
            goto done;
        Py_ssize_t size = type == 1 ? 1 : (Py_ssize_t)(h >> 3);
        if (size > end - pos)
            goto done;
        pos += size;
        if (h & 1)
            break;
    }
    if (fhd & 0x04)
        pos += 4;
    if (pos <= end)
        result = pos;
done:
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(result);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "Scan the records of a batch body; see record_scan.py."},
    {"zstd_frame_size", zstd_frame_size, METH_O, "Size of the zstd frame at the start; see compression.py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "Loops of the produce path's record checks, in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
