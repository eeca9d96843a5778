/* placeholder until the layer lands */
int rod_scsi_placeholder_;
