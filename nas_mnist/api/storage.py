"""Where studies live: the names, URLs and read-only opening that the command line shows and
checks (the storage itself is the search layer's, nas_mnist/searcher/storage.py)."""

from nas_mnist.searcher.storage import (check_study_name, default_storage,  # noqa: F401
                                        load_study as open_stored_study, mask_url)
