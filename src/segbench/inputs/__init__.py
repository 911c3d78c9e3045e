"""Where cases come from: CT volumes (NIfTI, DICOM series), their size limit, the built-in phantoms
and the case lists."""
