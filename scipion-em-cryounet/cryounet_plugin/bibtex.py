# -*- coding: utf-8 -*-
"""
@inproceedings{Ronneberger2015,
title = {U-Net: Convolutional Networks for Biomedical Image Segmentation},
author = {Ronneberger, Olaf and Fischer, Philipp and Brox, Thomas},
booktitle = {Medical Image Computing and Computer-Assisted Intervention (MICCAI 2015)},
series = {Lecture Notes in Computer Science},
volume = {9351},
pages = {234--241},
year = {2015},
doi = {http://dx.doi.org/10.1007/978-3-319-24574-4_28}
}

@article{Oktay2018,
title = {Attention U-Net: Learning Where to Look for the Pancreas},
author = {Oktay, Ozan and Schlemper, Jo and Le Folgoc, Loic and Lee, Matthew and Heinrich, Mattias and Misawa, Kazunari and Mori, Kensaku and McDonagh, Steven and Hammerla, Nils Y. and Kainz, Bernhard and Glocker, Ben and Rueckert, Daniel},
journal = {arXiv},
year = {2018},
doi = {http://dx.doi.org/10.48550/arXiv.1804.03999}
}

@inproceedings{Lin2017,
title = {Focal Loss for Dense Object Detection},
author = {Lin, Tsung-Yi and Goyal, Priya and Girshick, Ross and He, Kaiming and Dollar, Piotr},
booktitle = {IEEE International Conference on Computer Vision (ICCV)},
pages = {2999--3007},
year = {2017},
doi = {http://dx.doi.org/10.1109/ICCV.2017.324}
}

@article{Bepler2019,
title = {Positive-unlabeled convolutional neural networks for particle picking in cryo-electron micrographs},
author = {Bepler, Tristan and Morin, Andrew and Rapp, Micah and Brasch, Julia and Shapiro, Lawrence and Noble, Alex J. and Berger, Bonnie},
journal = {Nature Methods},
volume = {16},
pages = {1153--1160},
year = {2019},
doi = {http://dx.doi.org/10.1038/s41592-019-0575-8}
}

@article{Lee2013,
title = {Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for Deep Neural Networks},
author = {Lee, Dong-Hyun},
journal = {ICML 2013 Workshop on Challenges in Representation Learning},
year = {2013}
}

@article{Dhakal2023,
title = {A large expert-curated cryo-EM image dataset for machine learning protein particle picking},
author = {Dhakal, Ashwin and Gyawali, Rajan and Wang, Liguo and Cheng, Jianlin},
journal = {Scientific Data},
volume = {10},
pages = {392},
year = {2023},
doi = {http://dx.doi.org/10.1038/s41597-023-02280-2}
}
"""
