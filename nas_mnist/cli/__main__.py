import sys

from nas_mnist.cli import main

sys.exit(main())
