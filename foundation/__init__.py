"""The bottom floor that both the engine (`retrieval`) and the web (`cirweb`) stand on, standard library only:
the shared store of files every host reads (a folder or S3), this host's cache of it, the sentence-carrying
error they raise, and the command-line help format."""
