"""IP addresses of flow records: IPv4 as octets, /k prefixes, and keyed pseudonymisation.

A column holds IPv4 addresses in one of two forms: 'dotted' text ('192.168.1.1', no leading
zeros) or 'integer' numbers 0..2**32-1 (3232235777, also written as floats 3232235777.0).

`pseudonymise` applies Crypto-PAn (Xu et al., ICNP 2002) with yacryptopan's key schedule: AES-128
under the first 16 key bytes, padding from encrypting the last 16. Address bit i is flipped by the
top bit of AES(the address's first i bits, then the padding's remaining bits), so two addresses
share exactly as many leading bits after the mapping as before. yacryptopan encrypts one block
per call (32 per IPv4 address, about 0.3 ms); here each bit position is one AES call over all
distinct addresses, so 1e4 addresses take milliseconds. The output equals
`yacryptopan.CryptoPAn(key).anonymize(address)`, IPv6 included (written compressed).
"""

from __future__ import annotations

import hashlib
import ipaddress

import numpy as np
import pandas as pd
import yacryptopan

from flowjax.timefmt import raise_at_first

_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_DOTTED = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"
_SHIFTS = np.array([24, 16, 8, 0])
_FORMS = ("dotted", "integer")


def ip_form(values: pd.Series) -> str | None:
    """'dotted' or 'integer' when every present value is an IPv4 address in that form, else None."""
    present = values.dropna()
    if present.empty or pd.api.types.is_bool_dtype(values):
        return None
    if not pd.api.types.is_numeric_dtype(values):
        if pd.api.types.infer_dtype(present, skipna=True) != "string":
            return None
        if present.astype(str).str.fullmatch(_DOTTED).all():
            return "dotted"
    return "integer" if not _bad_integers(pd.to_numeric(present, errors="coerce")).any() else None


def to_octets(values: pd.Series, form: str) -> np.ndarray:
    """int64 [N, 4] octets; ValueError names the first row that is not an address in `form`."""
    _check_form(form)
    if form == "integer":
        numbers = pd.to_numeric(values, errors="coerce")
        raise_at_first(values, _bad_integers(numbers), "is not an IPv4 address as an integer")
        return numbers.to_numpy(np.int64)[:, None] >> _SHIFTS & 255
    octets = values.astype(str).astype("large_string[pyarrow]").str.extract(_DOTTED)  # fast regex
    raise_at_first(values, octets.isna().any(axis=1), "is not a dotted IPv4 address")
    return octets.astype(np.int64).to_numpy()


def from_octets(octets: np.ndarray, form: str) -> np.ndarray:
    """Addresses from [N, 4] octets: dotted strings (object array) or int64."""
    _check_form(form)
    octets = np.asarray(octets, dtype=np.int64)
    if octets.ndim != 2 or octets.shape[1] != 4 or ((octets < 0) | (octets > 255)).any():
        raise ValueError(f"octets must be [N, 4] in 0..255, got shape {octets.shape}")
    if form == "integer":
        return (octets << _SHIFTS).sum(axis=1)
    text = octets.astype(str)
    dotted = text[:, 0]
    for k in range(1, 4):
        dotted = np.char.add(np.char.add(dotted, "."), text[:, k])
    return dotted.astype(object)


def prefix(values: pd.Series, bits: int = 24) -> pd.Series:
    """The /bits network of each IPv4 address as text ('10.66.0.0/24'); other values unchanged."""
    if not 0 <= bits <= 32:
        raise ValueError(f"a prefix has 0 to 32 bits, got {bits}")
    form = ip_form(values)
    if form == "integer":
        rows = values.notna().to_numpy()
    elif pd.api.types.is_numeric_dtype(values):
        rows = np.zeros(len(values), dtype=bool)
    else:
        rows = values.astype(str).str.fullmatch(_DOTTED).fillna(False).to_numpy(bool)
        form = "dotted"
    out = values.astype(object).to_numpy(copy=True)
    if rows.any():
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        networks = from_octets(to_octets(values[rows], form), "integer") & mask
        out[rows] = from_octets(networks[:, None] >> _SHIFTS & 255, "dotted") + f"/{bits}"
    return pd.Series(out, index=values.index, name=values.name)


def pseudonymise(frame: pd.DataFrame, columns: list[str], key: bytes) -> pd.DataFrame:
    """The frame with each address in `columns` replaced by its Crypto-PAn image, form kept."""
    if not isinstance(key, bytes) or len(key) != 32:
        raise ValueError("the Crypto-PAn key must be 32 bytes (see key_from_text)")
    pan = yacryptopan.CryptoPAn(key)
    out = frame.copy()
    for column in columns:
        out[column] = _pseudonymise_column(frame[column], pan)
    return out


def key_from_text(text: str) -> bytes:
    """A 32-byte Crypto-PAn key from a passphrase (its SHA-256)."""
    return hashlib.sha256(text.encode()).digest()


def _check_form(form: str) -> None:
    """ValueError unless `form` is a known address form."""
    if form not in _FORMS:
        raise ValueError(f"address form must be one of {_FORMS}, got {form!r}")


def _bad_integers(numbers: pd.Series) -> np.ndarray:
    """Where numbers are missing or not integers in 0..2**32-1."""
    x = numbers.to_numpy(np.float64, na_value=np.nan)
    return ~((x >= 0) & (x <= 0xFFFFFFFF) & (x == np.floor(x)))


def _pseudonymise_column(values: pd.Series, pan: yacryptopan.CryptoPAn) -> pd.Series:
    """One column mapped through Crypto-PAn, each distinct address computed once."""
    distinct = pd.unique(values.dropna())
    integer = ip_form(values) == "integer"
    if pd.api.types.is_numeric_dtype(values) and not integer:
        raise ValueError(f"column {values.name!r} holds numbers that are not IPv4 addresses")
    addresses = [_address(v, integer, values.name) for v in distinct]
    mapped = _crypto_pan(addresses, pan)
    images = [type(v)(int(a)) if integer else str(a) for v, a in zip(distinct, mapped, strict=True)]
    return values.map(dict(zip(distinct, images, strict=True))).astype(values.dtype)


def _address(
    value: object, integer: bool, column: object
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """One cell as an address (text is never read as a number); ValueError names the column."""
    try:
        if integer:
            return ipaddress.IPv4Address(int(float(value)))
        return ipaddress.ip_address(str(value))
    except ValueError as error:
        raise ValueError(f"column {column!r}: {value!r} is not an IP address") from error


def _crypto_pan(addresses: list, pan: yacryptopan.CryptoPAn) -> list:
    """Crypto-PAn images of addresses, computed per bit position over all of them at once."""
    packed = np.zeros((len(addresses), 16), dtype=np.uint8)
    for row, address in enumerate(addresses):
        packed[row, : len(address.packed)] = np.frombuffer(address.packed, np.uint8)
    v6 = np.array([a.version == 6 for a in addresses], dtype=bool)
    flips = np.zeros_like(packed)
    # yacryptopan's cipher and padding, batched: it has no public API for many addresses.
    padding = np.frombuffer(pan._padding.tobytes(), np.uint8)
    for bit in range(128 if v6.any() else 32):
        rows = v6 if bit >= 32 else np.ones(len(addresses), dtype=bool)
        keep = np.packbits(np.arange(128) < bit)
        blocks = (packed[rows] & keep) | (padding & ~keep)
        first = np.frombuffer(pan._cipher.encrypt(blocks.tobytes()), np.uint8)[::16]
        flips[rows, bit // 8] |= (first >> 7) << (7 - bit % 8)
    images = packed ^ flips
    return [
        ipaddress.ip_address(bytes(image[: len(a.packed)]))
        for image, a in zip(images, addresses, strict=True)
    ]
