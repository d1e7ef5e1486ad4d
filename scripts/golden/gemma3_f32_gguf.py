"""Writes the packaged Gemma-3-270M GGUF with every tensor expanded to F32.

llama.cpp multiplies quantized weights with 8-bit-quantized activations, so on
the packaged Q4_K_M file it cannot agree with fute's f32 pass better than that
rounding allows. On this F32 copy (the same values fute expands the weights
to) llama.cpp runs in f32 too, which checks fute's Gemma 3 arithmetic itself.

Run with the venv that has gguf-py (e.g. /work/venv-torch):
    python scripts/golden/gemma3_f32_gguf.py IN.gguf OUT-f32.gguf
"""

import sys

import gguf
import numpy as np


def main():
    src, dest = sys.argv[1], sys.argv[2]
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dest, arch)
    for field in reader.fields.values():
        # GGUFWriter writes the header fields and the architecture itself.
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        if field.name == "general.file_type":
            writer.add_key_value(field.name, int(gguf.LlamaFileType.ALL_F32), kind)
            continue
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        writer.add_tensor(t.name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print("wrote", dest)


if __name__ == "__main__":
    main()
