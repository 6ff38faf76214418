"""The 21 cell classes of the Matek et al. (2021) bone-marrow cytology dataset.

The label index of a class is its position in ``CLASS_CODES``; it never depends on which
classes a particular copy of the dataset happens to contain.
"""

CLASS_MEANINGS: dict[str, str] = {
    "ABE": "Abnormal eosinophil",
    "ART": "Artefact",
    "BAS": "Basophil",
    "BLA": "Blast",
    "EBO": "Erythroblast",
    "EOS": "Eosinophil",
    "FGC": "Faggott cell",
    "HAC": "Hairy cell",
    "KSC": "Smudge cell",
    "LYI": "Immature lymphocyte",
    "LYT": "Lymphocyte",
    "MMZ": "Metamyelocyte",
    "MON": "Monocyte",
    "MYB": "Myelocyte",
    "NGB": "Band neutrophil",
    "NGS": "Segmented neutrophil",
    "NIF": "Not identifiable",
    "OTH": "Other cell",
    "PEB": "Proerythroblast",
    "PLM": "Plasma cell",
    "PMO": "Promyelocyte",
}

CLASS_CODES: tuple[str, ...] = tuple(sorted(CLASS_MEANINGS))
NUM_CLASSES = len(CLASS_CODES)
assert NUM_CLASSES == 21
